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
            f"{entity_type}: the database refused the write as a conflict: {reason_of(exc)}"
        ) from exc
    except DataError as exc:
        raise InvalidEntityError(
            f"{entity_type}: the database refused a value: {reason_of(exc)}"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{entity_type}: {type(exc).__name__}: {reason_of(exc)}") from exc


def reason_of(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's SQL, parameters and background link."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__
