"""Market engine: price feeds (replay by default), symbols, and the as-of clock."""
