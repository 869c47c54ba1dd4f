"""A bad header or query value is named in ``extra[].key`` as the client sent it, like a missing one.

Found calling the order API as documented (N, session 31): an empty or 300-character `Idempotency-Key` was
a 400 naming `idempotency_key` (the handler's argument), while a missing one names `Idempotency-Key`.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from litestar import Litestar, get, post
from litestar.params import Parameter
from litestar.testing import TestClient

from apps.common.error_handlers import exception_handlers
from apps.common.headers import idempotency_key_header

pytestmark = pytest.mark.unit

Key = Annotated[str | None, idempotency_key_header("retries answer the first", max_length=5)]


@post("/api/things", sync_to_thread=False)
def place(idempotency_key: Key = None) -> str:
    return "ok"


@get("/api/days", sync_to_thread=False)
def days(
    day_from: Annotated[str | None, Parameter(query="from", max_length=3)] = None,
    trace_id: Annotated[str | None, Parameter(header="X-Trace", max_length=3)] = None,
    plain: Annotated[int | None, Parameter(ge=1)] = None,
) -> str:
    return "ok"


def client() -> TestClient[Any]:
    app = Litestar([place, days], exception_handlers=exception_handlers(), logging_config=None)
    return TestClient(app)


def _keys(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.text
    return [(entry["key"], entry["source"]) for entry in response.json()["extra"]]


@pytest.mark.parametrize("value", ["", "k" * 6])
def test_a_bad_idempotency_key_is_named_as_the_header(value: str) -> None:
    with client() as http:
        response = http.post("/api/things", headers={"Idempotency-Key": value})
    assert _keys(response) == [("Idempotency-Key", "header")]


def test_aliased_query_and_header_and_plain_parameters_are_named_as_sent() -> None:
    with client() as http:
        assert _keys(http.get("/api/days", params={"from": "2026-01-01"})) == [("from", "query")]
        assert _keys(http.get("/api/days", headers={"X-Trace": "long"})) == [("X-Trace", "header")]
        assert _keys(http.get("/api/days", params={"plain": "0"})) == [("plain", "query")]
