"""Integrations with frameworks: SQLAlchemy (``freshcache[sqlalchemy]``), FastAPI."""
