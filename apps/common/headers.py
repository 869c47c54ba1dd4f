"""Request headers that several services read, declared once (so OpenAPI names them alike everywhere)."""

from __future__ import annotations

from litestar.params import HeaderParameter, ParameterKwarg

__all__ = ["idempotency_key_header"]


def idempotency_key_header(description: str, *, max_length: int) -> ParameterKwarg:
    """The ``Idempotency-Key`` header: a retry with the same key (and body) answers as the first request."""
    return HeaderParameter(name="Idempotency-Key", min_length=1, max_length=max_length, description=description)
