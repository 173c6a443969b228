"""Vector memory: Chroma collections with MIKEY's own offline embedding function."""
