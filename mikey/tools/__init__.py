"""Agent-facing tools: thin typed wrappers over the engines, each returning domain models."""
