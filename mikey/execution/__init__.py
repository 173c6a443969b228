"""Position execution with human approval: what turns an approved proposal into an order, exactly once.

- ``proposals``  order proposals and their lifecycle (approval bound to the order's digest, expiry, one submission)
- ``halt``       the kill switch shared by every MIKEY process
- ``db``         the execution database both live in (``settings.execution_db``)
- ``audit``      the append-only, hash-chained audit log of every transition (who, when, why, with what)
"""
