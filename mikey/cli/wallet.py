"""``mikey wallet``: the Solana signing key the ``solana`` and ``sandbox`` brokers sign with, never stored in plain
text (scrypt + AES-GCM, ``mikey.execution.solana.wallet``). The passphrase comes from ``MIKEY_WALLET_PASSPHRASE`` or a
prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mikey.cli.common import load_settings

wallet_app = typer.Typer(help="The encrypted Solana signing key.", no_args_is_help=True)


@wallet_app.command("import")
def import_wallet(
    path: Annotated[Path, typer.Argument(help="A Solana CLI keypair file (a JSON array of 64 numbers).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing wallet.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Encrypt a keypair file into MIKEY_HOME/wallet.json (the source file is left as it is: delete it yourself)."""
    from mikey.execution.solana.wallet import import_keypair, passphrase_from_env_or_prompt

    settings = load_settings()
    pubkey = import_keypair(path, settings.wallet_path, passphrase_from_env_or_prompt(confirm=True), overwrite=force)
    _done(settings.wallet_path, str(pubkey), as_json, f"imported {pubkey} into {settings.wallet_path} (encrypted); "
          f"{path} still holds the key in plain text: delete it once you have a backup")


@wallet_app.command("new")
def new_wallet(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing wallet.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a fresh keypair (for the sandbox, or to fund), encrypted into MIKEY_HOME/wallet.json."""
    from mikey.execution.solana.wallet import new_keypair, passphrase_from_env_or_prompt

    settings = load_settings()
    pubkey = new_keypair(settings.wallet_path, passphrase_from_env_or_prompt(confirm=True), overwrite=force)
    _done(settings.wallet_path, str(pubkey), as_json, f"created {pubkey} in {settings.wallet_path} (encrypted)")


@wallet_app.command("show")
def show_wallet(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The wallet's public key (no passphrase needed: only the secret is encrypted)."""
    from mikey.execution.solana.wallet import wallet_pubkey

    settings = load_settings()
    pubkey = wallet_pubkey(settings.wallet_path)
    _done(settings.wallet_path, str(pubkey), as_json, f"{pubkey} ({settings.wallet_path})")


def _done(path: Path, pubkey: str, as_json: bool, text: str) -> None:
    typer.echo(json.dumps({"pubkey": pubkey, "path": str(path)}) if as_json else text)
