"""SQLAlchemy's errors, turned into freshcache's at a repository's boundary.

A service maps one family of errors to responses: a ConflictError is a 409, an
InvalidEntityError a 422, a DatabaseError a 503. The original stays as ``__cause__``.

An IntegrityError is the client's conflict only when a constraint of the entity tables
refused the write (a duplicate email, a parent that does not exist). The same error from
the outbox (the write's own bookkeeping) or from a refusal that names no table (a
trigger's RAISE) is not something the client can fix by changing the request: it is a
DatabaseError.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterator, Mapping

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from freshcache._exceptions import ConflictError, DatabaseError, InvalidEntityError

# SQLite names the table of a unique, primary key or not-null column, only the name of a
# CHECK constraint, and nothing at all for a foreign key.
_SQLITE_COLUMN = re.compile(r"(?:UNIQUE|NOT NULL|PRIMARY KEY) constraint failed: \"?(\w+)\"?\.")
_SQLITE_CHECK = re.compile(r"CHECK constraint failed: \"?(\w+)")
_SQLITE_FOREIGN_KEY = "FOREIGN KEY constraint failed"


@contextlib.contextmanager
def database_errors(
    entity_type: str,
    entity_tables: Collection[str] = (),
    checks: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Re-raise SQLAlchemy's errors as freshcache's, naming the entity type.

    ``entity_tables`` are the tables whose constraints are the client's to break;
    ``checks`` maps CHECK constraint names to their tables (SQLite names only those).
    """
    try:
        yield
    except IntegrityError as exc:
        if not is_clients_conflict(exc, entity_tables, checks or {}):
            raise DatabaseError(
                f"{entity_type}: the database refused the write for a reason of its own "
                f"(not a conflict with the data sent): {reason_of(exc)}"
            ) from exc
        raise ConflictError(
            f"{entity_type}: the database refused the write as a conflict: {reason_of(exc)}"
        ) from exc
    except DataError as exc:
        raise InvalidEntityError(
            f"{entity_type}: the database refused a value: {reason_of(exc)}"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{entity_type}: {type(exc).__name__}: {reason_of(exc)}") from exc


def is_clients_conflict(
    exc: IntegrityError, entity_tables: Collection[str], checks: Mapping[str, str]
) -> bool:
    """Whether a constraint of ``entity_tables`` refused the write."""
    table = refused_table(exc, checks)
    if table is not None:
        return table in entity_tables
    # SQLite says no more than this; an outbox declares no foreign key.
    return str(exc.orig).strip() == _SQLITE_FOREIGN_KEY


def refused_table(exc: IntegrityError, checks: Mapping[str, str]) -> str | None:
    """The table whose constraint refused the write, as the driver tells it; None when it does not."""
    original = exc.orig
    diag = getattr(original, "diag", None)  # psycopg
    if diag is not None:
        name = getattr(diag, "table_name", None)
        return name if isinstance(name, str) else None
    for candidate in (original, getattr(original, "__cause__", None)):  # asyncpg, under SQLAlchemy
        name = getattr(candidate, "table_name", None)
        if isinstance(name, str):
            return name
    message = str(original).strip()
    column = _SQLITE_COLUMN.match(message)
    if column is not None:
        return column.group(1)
    check = _SQLITE_CHECK.match(message)
    if check is not None:
        return checks.get(check.group(1))
    return None


def reason_of(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's SQL, parameters and background link."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__
