"""``mikey serve``: the HTTP API (risk assessment, chat) under uvicorn.

fastapi, uvicorn and the app load inside the command, so ``mikey --help`` stays light.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mikey.cli.common import load_settings


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Serve the HTTP API with uvicorn: POST /v1/risk/assess, GET /healthz (docs at /docs)."""
    import gc

    import uvicorn

    from mikey.api.app import create_app
    from mikey.router.groups import model_groups, role_chain
    from mikey.router.local import warm

    settings = load_settings()
    app = create_app(settings)
    # The chat endpoints' local model loads in its worker process now, not on the first chat request.
    warm(settings, role_chain(settings, model_groups(settings), "analyze"))
    # What is loaded now (pandas, numpy, pydantic schemas, the app) lives as long as the process. Frozen, it is out
    # of the collector's reach, so a full collection (about 30 ms over this heap) cannot stall requests.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port)
