"""Keyset pagination cursors: the (created_at, id) of the last row, as an opaque token; and the bound on the
lines a listing page of rows with lines carries (an order's items, a return's).

A token is 32 url-safe base64 characters: the creation time in microseconds since 1970 (8 bytes, signed)
and the row id (16 bytes). Every string of that shape is a position in the list, so the query schema's
pattern (``CURSOR_PATTERN``) says exactly which cursors are accepted.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, TypeVar

from litestar.params import QueryParameter
from sqlalchemy import func, select

from apps.common.errors import InvalidField
from apps.common.fields import worded

if TYPE_CHECKING:
    from sqlalchemy import ScalarSelect
    from sqlalchemy.orm import QueryableAttribute

__all__ = [
    "CURSOR_PATTERN",
    "LINES_BOUND",
    "MAX_PAGE_LINES",
    "Cursor",
    "count_lines",
    "decode_cursor",
    "encode_cursor",
    "page_within_lines",
]

# Empty (or absent) means the first page.
CURSOR_PATTERN: Final = worded(r"^([A-Za-z0-9_-]{32})?$", "must be the previous page's next_cursor, as given")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{32}")
_LAYOUT: Final = struct.Struct(">q16s")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
# A token may encode any 64-bit time; positions outside what a datetime can hold sort before or after
# every row, so they are clamped rather than refused.
_MIN_MICROS: Final = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // _MICROSECOND
_MAX_MICROS: Final = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // _MICROSECOND

Cursor = Annotated[
    str | None,
    QueryParameter(pattern=CURSOR_PATTERN, description="next_cursor of the previous page; absent for the first page"),
]


def encode_cursor(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    """The position after a row, as an opaque token: clients must not build or parse it."""
    micros = (created_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(_LAYOUT.pack(micros, row_id.bytes)).decode()


def decode_cursor(token: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) a cursor stands for; a token of another shape is the client's error."""
    if not _TOKEN_RE.fullmatch(token):
        raise InvalidField("cursor", "is not a cursor returned by this API", source="query")
    micros, raw_id = _LAYOUT.unpack(base64.urlsafe_b64decode(token))
    created_at = _EPOCH + _MICROSECOND * min(max(micros, _MIN_MICROS), _MAX_MICROS)
    return created_at, uuid.UUID(bytes=raw_id)


# The most lines a listing page shows: 100 orders of 100 lines were a 2 MB page and ~200 ms of the API's one
# event loop, every other request waiting (S, session 33). Ten full orders (or returns) at most, or a page of
# small ones. Read at each call, so a test may lower it.
MAX_PAGE_LINES: Final = 1000
# What a listing's limit parameter adds to its description.
LINES_BOUND: Final = f"fewer when they hold over {MAX_PAGE_LINES:,} lines (next_cursor goes on)"


class Positioned(Protocol):
    """A listed row: its keyset position."""

    @property
    def created_at(self) -> dt.datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


Row = TypeVar("Row", bound=Positioned)


def count_lines(
    parent: Any, parent_key: QueryableAttribute[Any], line_key: QueryableAttribute[Any]
) -> ScalarSelect[int]:
    """A row's number of lines, selected with the page's rows (a correlated count over ``line_key``'s index),
    so that the lines themselves are read only for the rows a page keeps."""
    return select(func.count()).where(line_key == parent_key).correlate(parent).scalar_subquery()


def page_within_lines(found: Sequence[tuple[Row, int]], limit: int) -> tuple[list[Row], str | None]:
    """The page out of ``found`` (rows in listing order with their lines, up to ``limit`` + 1 of them) and the
    cursor after it (None after the last row): at most ``limit`` rows and ``MAX_PAGE_LINES`` lines in all, the
    first row whatever its lines (a row has at most ``pricing.MAX_LINES``), so a page always moves on."""
    page: list[Row] = []
    total = 0
    for row, lines in found[:limit]:
        if page and total + lines > MAX_PAGE_LINES:
            break
        page.append(row)
        total += lines
    return page, encode_cursor(page[-1].created_at, page[-1].id) if len(found) > len(page) else None
