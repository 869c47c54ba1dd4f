"""A client that goes away before its request body has arrived is not a server error: 499, logged at info."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar import Litestar, post
from litestar.exceptions import InternalServerException
from litestar.types import Message, ReceiveMessage

from apps.common.error_handlers import (
    HTTP_499_CLIENT_CLOSED_REQUEST,
    classify_database_error,
    client_went_away,
    exception_handlers,
)

pytestmark = pytest.mark.unit


@post("/api/things")
async def create_thing(data: dict[str, Any]) -> dict[str, Any]:
    return data


async def send_a_body_then_vanish(app: Litestar) -> list[Message]:
    """Drive the app as uvicorn does when the client closes its socket halfway through the body."""
    incoming: list[ReceiveMessage] = [
        {"type": "http.request", "body": b'{"name": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> ReceiveMessage:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Any = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/things",
        "raw_path": b"/api/things",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
    }
    await app(scope, receive, send)
    return sent


async def test_a_client_gone_mid_body_is_a_499_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    app = Litestar(route_handlers=[create_thing], exception_handlers=exception_handlers(), logging_config=None)
    with caplog.at_level(logging.INFO, logger="apps.http"):
        sent = await send_a_body_then_vanish(app)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [HTTP_499_CLIENT_CLOSED_REQUEST]
    http_records = [r for r in caplog.records if r.name == "apps.http"]
    assert [r.getMessage() for r in http_records] == ["client disconnected"]
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in http_records)


def test_only_litestars_disconnect_is_taken_for_a_client_gone() -> None:
    assert client_went_away(InternalServerException("client disconnected prematurely"))
    assert not client_went_away(InternalServerException("something else broke"))
    assert not client_went_away(RuntimeError("client disconnected prematurely"))
    # Any other 500 stays a 500.
    assert classify_database_error(InternalServerException("something else broke"))[0] == 500
