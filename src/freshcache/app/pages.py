"""Pages of a list: limit and offset, or an opaque cursor that pages by keyset (ids after the last one seen).

A list answers a JSON array, as it always has; the next page's cursor rides in the
``X-Next-Cursor`` header and in ``Link: <...>; rel="next"`` (absent on the last page), so
a client that pages by offset sees no change. A cursor is the last id of the page,
encoded: clients pass it back, they do not build it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, Response

_PREFIX = "after:"
MAX_ID = 2**31 - 1


def encode(after: int) -> str:
    """The cursor of the page that starts after id ``after``."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{after}".encode()).decode().rstrip("=")


def decode(cursor: str | None) -> int | None:
    """The id a cursor starts after; a ValueError (a 422 naming ``cursor``) if it is not one of ours."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    number = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or not number.isdigit() or not 0 < int(number) <= MAX_ID:
        raise ValueError("not a cursor this service gave: pass back a next cursor unchanged")
    return int(number)


Cursor = Annotated[
    str | None,
    Query(
        max_length=64,
        description="X-Next-Cursor of the previous page: the next page by id (not with offset).",
    ),
]


def start_after(cursor: str | None, offset: int) -> int | None:
    """The id the page starts after, once cursor and offset are checked not to be combined."""
    after = decode_query(cursor)
    if after is not None and offset:
        raise HTTPException(422, "offset: cannot be combined with cursor (a cursor is a position)")
    return after


def decode_query(cursor: str | None) -> int | None:
    try:
        return decode(cursor)
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None


def page(request: Request, response: Response, rows: Sequence[Any], limit: int) -> Sequence[Any]:
    """The first ``limit`` rows of ``limit + 1`` read; the next cursor set on ``response`` when more follow."""
    if len(rows) <= limit:
        return rows
    shown = rows[:limit]
    cursor = encode(shown[-1].id)
    following = request.url.remove_query_params("offset").include_query_params(
        cursor=cursor, limit=limit
    )
    response.headers["X-Next-Cursor"] = cursor
    response.headers["Link"] = f'<{following}>; rel="next"'
    return shown
