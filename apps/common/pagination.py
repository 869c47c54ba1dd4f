"""Keyset pagination cursors: the (created_at, id) of the last row, as an opaque token.

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
from typing import Annotated, Final

from litestar.params import QueryParameter

from apps.common.errors import InvalidField
from apps.common.fields import worded

__all__ = ["CURSOR_PATTERN", "Cursor", "decode_cursor", "encode_cursor"]

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
