"""The database fixtures live in tests/databases.py (registered by tests/conftest.py)."""

from ..databases import Database, database, postgres, sqlite  # noqa: F401 - re-exported for these tests

__all__ = ["Database"]
