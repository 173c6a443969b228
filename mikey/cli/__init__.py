"""The ``mikey`` command line (typer + rich): a composition root, one module per command group.

``common`` holds what the commands share (settings from options, dates, closing, stored news) and ``render`` the
terminal rendering of an answer; no command module imports this package or another command module. Heavy modules
(litellm, langgraph, pandas, torch, chromadb, fastapi) are imported inside the commands that need them, so ``mikey
--help`` stays fast. Every ``MikeyError`` ends as one line on stderr and exit code 1, never a
traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from mikey.cli import alerts, analyze, chat, data, evals, history, insights, models, positions, risk, serve, wallet
from mikey.errors import MikeyError

app = typer.Typer(
    name="mikey",
    help="MIKEY: AI market analysis and chat for Solana perpetuals. Numbers are computed by code, words by models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(chat.chat)
app.command()(history.history)
app.command()(models.models)
app.command()(models.usage)
app.add_typer(data.data_app, name="data")
app.add_typer(risk.risk_app, name="risk")
app.command()(analyze.analyze)
app.command()(serve.serve)
app.command()(insights.insights)
app.command()(positions.halt)
app.command()(positions.trade)
app.add_typer(positions.positions_app, name="positions")
app.add_typer(wallet.wallet_app, name="wallet")
app.add_typer(evals.eval_app, name="eval")
app.add_typer(alerts.alerts_app, name="alerts")


def main() -> None:
    """Entry point: run the app, turning MIKEY's errors into one line on stderr."""
    try:
        app()
    except MikeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        if os.environ.get("MIKEY_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set MIKEY_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
