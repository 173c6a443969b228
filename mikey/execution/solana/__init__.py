"""The QuantDesk perp program on Solana as a MIKEY broker (``broker=solana`` over JSON-RPC, ``broker=sandbox`` in
an in-process LiteSVM running the program's real bytecode).

- ``idl``      the program's Anchor IDL as a codec: Borsh args and accounts, account metas and PDAs, error messages,
               with the deployed binary's differences from its IDL in one override table
- ``program``  the program's conventions outside its IDL: market and user-account addresses, 6-decimal fixed point
- ``wallet``   the signing key at rest: scrypt + AES-256-GCM around a Solana keypair, never plain text
- ``rpc``      the ``Transport`` protocol and its JSON-RPC implementation (solders' typed requests over httpx)
- ``sandbox``  ``LiteSVMTransport``: the program binary in LiteSVM, its accounts kept on disk between commands
- ``journal``  client_id -> the one signed transaction that may execute it (exactly-once across retries and crashes)
- ``broker``   ``SolanaBroker``: the ``Broker`` protocol over a ``Transport``; ``SignOnly`` for sign-only mode
"""
