"""freshcache against raw clients and its peers: ``uv run python -m benchmarks.run``."""
