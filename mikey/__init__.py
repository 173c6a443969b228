"""MIKEY: AI market analysis and chat for Solana perpetuals.

Numbers are computed by code, words are written by models. This package root stays import-light on purpose:
``mikey --help`` must not pull in litellm, torch, chromadb or transformers.
"""

__version__ = "0.1.0"
