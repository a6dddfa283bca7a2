"""SQLAlchemy's errors, turned into freshcache's at a repository's boundary.

A service maps one family of errors to responses: a ConflictError is a 409, an
InvalidEntityError a 422, a DatabaseError a 503. The original stays as ``__cause__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from freshcache._exceptions import ConflictError, DatabaseError, InvalidEntityError


@contextlib.contextmanager
def database_errors(entity_type: str) -> Iterator[None]:
    """Re-raise SQLAlchemy's errors as freshcache's, naming the entity type."""
    try:
        yield
    except IntegrityError as exc:
        raise ConflictError(
            f"{entity_type}: the database refused the write as a conflict: {_reason(exc)}"
        ) from exc
    except DataError as exc:
        raise InvalidEntityError(
            f"{entity_type}: the database refused a value: {_reason(exc)}"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{entity_type}: {type(exc).__name__}: {_reason(exc)}") from exc


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own first line, without the SQL statement and its parameters."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__
