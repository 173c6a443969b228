"""LangGraph graphs over the router, tools and engines. ``chat.py`` holds the chat turn."""
