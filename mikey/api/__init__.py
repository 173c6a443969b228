"""MIKEY's HTTP API (FastAPI): the risk assessment the trading backend asks for before it opens a position.

``mikey.api.app.create_app`` builds the app; ``mikey serve`` runs it with uvicorn.
"""
