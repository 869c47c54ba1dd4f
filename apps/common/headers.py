"""The idempotency headers several services read and answer, declared once (so OpenAPI names them alike everywhere)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter, ParameterKwarg

__all__ = ["REPLAYED", "idempotency_key_header", "replayed_header"]

# On the answer to a repeated request (same Idempotency-Key and body): the first request's answer, again.
REPLAYED: Final[Mapping[str, str]] = MappingProxyType({"Idempotent-Replayed": "true"})


def idempotency_key_header(description: str, *, max_length: int) -> ParameterKwarg:
    """The ``Idempotency-Key`` header: a retry with the same key (and body) answers as the first request."""
    return HeaderParameter(name="Idempotency-Key", min_length=1, max_length=max_length, description=description)


def replayed_header() -> ResponseHeader:
    """``Idempotent-Replayed: true`` in the operation's OpenAPI (sent only on a repeat, see ``REPLAYED``)."""
    return ResponseHeader(
        name="Idempotent-Replayed",
        value="true",
        documentation_only=True,
        description="`true` when this answers a repeat of an earlier request with the same Idempotency-Key",
    )
