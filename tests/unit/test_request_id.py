"""X-Request-ID (outbox/correlation.py): a UUID is taken and answered, anything else replaced by a new one,
and every line logged during the request, the access log's too, carries it."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig
from litestar.testing import TestClient

from apps.common.logs import AccessLog, BatchingHandler, JsonLogFormatter, SentStatusPrometheusMiddleware
from outbox.correlation import correlation_id, sane_or_new

R1 = "3f0c1c9e-6a8e-4d0b-9c55-0c7f2b1f3a10"
R2 = "0b6f0c0e-1a12-4d8e-9d4f-6a0f3c1e8a53"
R401 = "9d4f0b6f-0c0e-4a11-8a53-6a0f3c1e4d8e"
R404 = "c0ffee00-1a11-4d8e-9d4f-0b6f0c0e8a53"


@pytest.mark.parametrize("sent", [R1.encode(), b"00000000-0000-0000-0000-000000000000"])
def test_a_uuid_is_kept(sent: bytes) -> None:
    assert sane_or_new(sent) == sent.decode()


def test_a_uuid_in_capitals_is_kept_in_lower_case_as_postgresql_prints_it() -> None:
    assert sane_or_new(b"3F0C1C9E-6A8E-4D0B-9C55-0C7F2B1F3A10") == R1


@pytest.mark.parametrize(
    "sent",
    [
        None,
        b"",
        b"req-1",
        b"3f0c1c9e6a8e4d0b9c550c7f2b1f3a10",  # a UUID without its dashes: not the text the events will carry
        b"3f0c1c9e-6a8e-4d0b-9c55-0c7f2b1f3a10\n",
        b"{3f0c1c9e-6a8e-4d0b-9c55-0c7f2b1f3a10}",
        b"3f0c1c9e-6a8e-4d0b-9c55-0c7f2b1f3a10x",
        b"ada@example.com",
        b"abc def",
        b"abc\x1b[31m",
        b"line\nforged",
        b"+14155550123",
        "caf\u00e9".encode(),
        b"a/b",
    ],
)
def test_anything_else_is_replaced_by_a_new_uuid(sent: bytes | None) -> None:
    made = sane_or_new(sent)
    assert str(uuid.UUID(made)) == made
    assert sane_or_new(sent) != made  # new each time


@get("/api/thing", sync_to_thread=False)
def thing() -> dict[str, Any]:
    logging.getLogger("apps.thing").info("handled")
    return {"seen": correlation_id.get()}


def _app(lines: io.StringIO, *, refusing: bool = False) -> Litestar:
    """The metrics middleware (with the access log) around ``thing``, its lines (as the APIs log) to ``lines``;
    ``refusing``: with the auth middleware and the security headers, as every service app has them."""
    from apps.common.auth_tokens import auth_middleware
    from apps.common.security_headers import SecurityHeadersPlugin

    name = f"test_request_id_{uuid.uuid4().hex[:8]}"
    metrics = PrometheusConfig(app_name=name, prefix=name, group_path=True)
    middleware: list[Any] = [DefineMiddleware(SentStatusPrometheusMiddleware, config=metrics, access_log=AccessLog())]
    handler = BatchingHandler(lines, flush_ms=1)
    handler.setFormatter(JsonLogFormatter("test"))
    for logger in ("apps.thing", "apps.http"):
        logging.getLogger(logger).addHandler(handler)
        logging.getLogger(logger).setLevel(logging.INFO)
    return Litestar(
        [thing],
        middleware=[*middleware, auth_middleware()] if refusing else middleware,
        plugins=[SecurityHeadersPlugin()] if refusing else [],
        logging_config=None,
        on_shutdown=[lambda: _detach(handler)],
    )


def _detach(handler: logging.Handler) -> None:
    handler.close()
    for logger in ("apps.thing", "apps.http"):
        logging.getLogger(logger).removeHandler(handler)


def _requests(
    sent: list[dict[str, str]], path: str = "/api/thing", *, refusing: bool = False
) -> tuple[list[Any], list[dict[str, Any]]]:
    lines = io.StringIO()
    with TestClient(_app(lines, refusing=refusing)) as client:
        answers = [client.get(path, headers=headers) for headers in sent]
    return answers, [json.loads(line) for line in lines.getvalue().splitlines()]


def test_the_id_is_answered_seen_by_the_handler_and_on_every_line_of_its_request() -> None:
    answers, logged = _requests([{"X-Request-ID": R1}, {"X-Request-ID": R2}])

    assert [a.headers["x-request-id"] for a in answers] == [R1, R2]
    assert [a.json()["seen"] for a in answers] == [R1, R2]
    assert [(line["msg"], line["request_id"]) for line in logged] == [
        ("handled", R1),
        ("request", R1),
        ("handled", R2),
        ("request", R2),
    ]
    assert correlation_id.get() is None  # nothing leaks out of a request


def test_a_request_without_a_sane_id_gets_a_new_one_never_the_one_sent() -> None:
    answers, logged = _requests([{}, {"X-Request-ID": "ada@example.com"}])

    made = [a.headers["x-request-id"] for a in answers]
    assert all(str(uuid.UUID(m)) == m for m in made) and made[0] != made[1]
    assert [line["request_id"] for line in logged] == [made[0], made[0], made[1], made[1]]
    assert "ada@example.com" not in json.dumps(logged)


def test_answers_the_middleware_does_not_send_carry_the_id_too() -> None:
    """The auth middleware's 401 is answered by Litestar's outer handler and an unknown path's 404 passes by
    every middleware: the security headers' before_send says the id there (the 401's access log line's)."""
    refused, logged = _requests([{"Authorization": "Bearer bad", "X-Request-ID": R401}], refusing=True)
    unknown, _ = _requests([{"X-Request-ID": R404}, {"X-Request-ID": "bad id"}], "/api/nothing", refusing=True)

    assert (refused[0].status_code, refused[0].headers["x-request-id"]) == (401, R401)
    assert [line["request_id"] for line in logged if line["msg"] == "request"] == [R401]
    assert (unknown[0].status_code, unknown[0].headers["x-request-id"]) == (404, R404)
    made = unknown[1].headers["x-request-id"]
    assert str(uuid.UUID(made)) == made
