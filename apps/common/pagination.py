"""Keyset pagination cursors: the (created_at, id) of the last row, as an opaque token."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid

import msgspec

from apps.common.errors import InvalidField


class _Cursor(msgspec.Struct, array_like=True):
    created_at: dt.datetime
    id: uuid.UUID


def encode_cursor(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    """The position after a row, as an opaque token: clients must not build or parse it."""
    raw = msgspec.json.encode(_Cursor(created_at, row_id))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) a cursor stands for; a token we did not issue is the client's error."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        # msgspec.ValidationError is a DecodeError; binascii.Error is a ValueError.
        raise InvalidField("cursor", "is not a cursor returned by this API", source="query") from None
    if cursor.created_at.tzinfo is None:
        raise InvalidField("cursor", "is not a cursor returned by this API", source="query")
    return cursor.created_at, cursor.id
