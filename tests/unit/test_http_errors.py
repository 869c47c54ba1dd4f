"""The error mapping and the records of what a client received: pure, with the real exception types."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Request
from litestar.types import Message, Receive, ReceiveMessage, Scope, Send
from sqlalchemy import exc as sa_exc

from apps.common.error_handlers import classify_database_error, database_error_handler
from apps.common.logs import AccessLog, SentStatusPrometheusMiddleware

pytestmark = pytest.mark.unit


def wrapped(orig: BaseException) -> sa_exc.DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises for an asyncpg error it has no class for: a plain DBAPIError."""
    try:
        try:
            raise orig
        except BaseException as inner:
            raise sa_exc.DBAPIError("SELECT 1", None, inner) from inner
    except sa_exc.DBAPIError as outer:
        return outer


@pytest.mark.parametrize(
    "orig",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        ConnectionRefusedError(111, "Connect call failed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_database_that_cannot_be_reached_is_a_503(orig: BaseException) -> None:
    assert classify_database_error(wrapped(orig))[0] == 503
    assert classify_database_error(orig)[0] == 503  # also when it reaches the handler unwrapped


@pytest.mark.parametrize(
    "orig",
    [
        asyncpg.NumericValueOutOfRangeError("numeric field overflow"),
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        asyncpg.DataError("invalid input for query argument $1"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_value_the_database_refuses_is_a_400_not_a_500(orig: BaseException) -> None:
    status, detail = classify_database_error(wrapped(orig))
    assert status == 400
    assert "SELECT" not in detail and "$1" not in detail


@pytest.mark.parametrize(
    ("orig", "retry_after"),
    [
        (asyncpg.DeadlockDetectedError("deadlock detected"), "1"),
        (asyncpg.SerializationError("could not serialize access due to concurrent update"), "1"),
        (asyncpg.LockNotAvailableError("canceling statement due to lock timeout"), "1"),
        (asyncpg.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only transaction"), "5"),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, BaseException) else e,
)
async def test_a_transaction_refused_under_contention_or_read_only_is_a_503_with_retry_after(
    orig: Exception, retry_after: str
) -> None:
    """They were 500s. Raised through the session (wrapped) or by the order's driver statements (raw)."""
    raised_as: list[Exception] = [wrapped(orig), orig]
    for raised in raised_as:
        status, detail = classify_database_error(raised)
        assert status == 503, detail
        response = database_error_handler(_request(), raised)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == retry_after
        assert response.content["extra"] == [{"dependency": "database"}]
        assert str(orig) not in response.content["detail"]


def _request() -> Request[Any, Any, Any]:
    return Request(scope={"type": "http", "method": "PATCH", "path": "/api/products/x", "headers": []})  # type: ignore[arg-type]


def test_anything_else_is_still_a_500() -> None:
    assert classify_database_error(wrapped(asyncpg.UndefinedTableError("relation does not exist")))[0] == 500


async def test_access_log_records_500_when_the_answer_never_went_out(caplog: pytest.LogCaptureFixture) -> None:
    """A start message that fails to go out (a before-send hook raising) is the server's 500 to the
    client, whatever status the app chose."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})

    async def broken_send(message: Message) -> None:
        raise RuntimeError("rollback on a dead connection")

    scope: Any = {"type": "http", "method": "GET", "path": "/api/products", "path_template": "/api/products"}
    with caplog.at_level(logging.INFO, logger="apps.http"), pytest.raises(RuntimeError):
        await _logged(app)(scope, _no_receive, broken_send)
    assert [r.__dict__["status"] for r in caplog.records if r.getMessage() == "request"] == [500]


async def test_access_log_records_the_status_sent_even_if_the_app_raises_afterwards(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        raise RuntimeError("after the start")

    async def sent(message: Message) -> None:
        return None

    scope: Any = {"type": "http", "method": "GET", "path": "/api/products", "path_template": "/api/products"}
    with caplog.at_level(logging.INFO, logger="apps.http"), pytest.raises(RuntimeError):
        await _logged(app)(scope, _no_receive, sent)
    assert [r.__dict__["status"] for r in caplog.records if r.getMessage() == "request"] == [503]


def _logged(app: Any) -> SentStatusPrometheusMiddleware:
    """The metrics middleware that writes the access log, around ``app``, counting under an app name of its own."""
    from litestar.plugins.prometheus import PrometheusConfig

    name = f"test_access_{uuid.uuid4().hex[:8]}"
    config = PrometheusConfig(app_name=name, prefix=name, group_path=True)
    return SentStatusPrometheusMiddleware(app, config, access_log=AccessLog())


async def _no_receive() -> ReceiveMessage:
    raise AssertionError("not read")


async def test_metrics_count_500_when_the_answer_never_went_out() -> None:
    """Litestar's middleware took the status before sending it and defaulted to 200; ours counts what left."""
    span: dict[str, float] = {"start_time": 0.0, "end_time": 0, "duration": 0, "status_code": 200}

    async def broken_send(message: Message) -> None:
        raise RuntimeError("rollback on a dead connection")

    wrapped = SentStatusPrometheusMiddleware._get_wrapped_send(None, broken_send, span)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await wrapped({"type": "http.response.start", "status": 503, "headers": []})
    assert span["status_code"] == 500

    async def sent(message: Message) -> None:
        return None

    wrapped = SentStatusPrometheusMiddleware._get_wrapped_send(None, sent, span)  # type: ignore[arg-type]
    await wrapped({"type": "http.response.start", "status": 503, "headers": []})
    assert span["status_code"] == 503


def test_a_bad_token_is_logged_and_counted_as_the_401_it_answered(caplog: pytest.LogCaptureFixture) -> None:
    """The auth middleware's 401 is raised inside the access log and metrics middlewares and answered by
    Litestar's outer exception handler: both recorded a 500 (and the access log a second line) before."""
    from litestar import Litestar, get
    from litestar.middleware.base import DefineMiddleware
    from litestar.plugins.prometheus import PrometheusConfig
    from litestar.testing import TestClient
    from prometheus_client import REGISTRY

    from apps.common.auth_tokens import auth_middleware

    @get("/api/thing", sync_to_thread=False)
    def thing() -> str:
        return "never reached"

    app_name = f"test_refusals_{uuid.uuid4().hex[:8]}"
    metrics = PrometheusConfig(app_name=app_name, prefix=app_name, group_path=True)
    logged = DefineMiddleware(SentStatusPrometheusMiddleware, config=metrics, access_log=AccessLog())
    middleware: list[Any] = [logged, auth_middleware()]
    app = Litestar([thing], middleware=middleware, logging_config=None)
    with caplog.at_level(logging.INFO, logger="apps.http"), TestClient(app) as client:
        response = client.get("/api/thing", headers={"Authorization": "Bearer not-a-token"})

    assert response.status_code == 401
    assert [r.__dict__["status"] for r in caplog.records if r.getMessage() == "request"] == [401]
    labels = {"app_name": app_name, "method": "GET", "path": "/api/thing"}
    assert REGISTRY.get_sample_value(f"{app_name}_requests_total", {**labels, "status_code": "401"}) == 1
    assert REGISTRY.get_sample_value(f"{app_name}_requests_total", {**labels, "status_code": "500"}) is None


def test_a_body_nested_too_deep_is_a_400_and_a_recursion_of_ours_still_a_500() -> None:
    """msgspec's decoder raises RecursionError past its nesting limit, inside Litestar's untyped decode of
    the body: a 500 on every write operation before. Our own runaway recursion stays a bug."""
    from litestar import Litestar, post
    from litestar.testing import TestClient

    from apps.common.error_handlers import exception_handlers

    @post("/api/thing", sync_to_thread=False)
    def thing(data: dict[str, Any]) -> str:
        return "decoded"

    @post("/api/loop", sync_to_thread=False)
    def loop() -> str:
        def down(n: int) -> int:
            return down(n + 1)

        return str(down(0))

    app = Litestar([thing, loop], exception_handlers=exception_handlers(), logging_config=None)
    with TestClient(app) as client:
        deep = client.post("/api/thing", content=b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}")
        shallow = client.post("/api/thing", content=b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}")
        ours = client.post("/api/loop")

    assert deep.status_code == 400, deep.text
    assert deep.json()["extra"] == [{"message": "the JSON is nested too deeply", "key": "body", "source": "body"}]
    assert shallow.status_code == 201
    assert ours.status_code == 500


def test_a_body_whose_strings_are_not_utf8_is_a_400_and_a_decoding_error_of_ours_still_a_500() -> None:
    """msgspec raises UnicodeDecodeError, not its DecodeError, for a JSON string that is not UTF-8: Litestar's
    decode of the body let it through, a 500 on every write operation of every service (W, session 34)."""
    from litestar import Litestar, post
    from litestar.testing import TestClient

    from apps.common.error_handlers import exception_handlers

    @post("/api/thing", sync_to_thread=False)
    def thing(data: dict[str, Any]) -> str:
        return "decoded"

    @post("/api/ours", sync_to_thread=False)
    def ours() -> str:
        return b"\x80".decode()

    app = Litestar([thing, ours], exception_handlers=exception_handlers(), logging_config=None)
    with TestClient(app) as client:
        latin1 = client.post("/api/thing", content='{"city": "Malmö"}'.encode("latin-1"))
        lone = client.post("/api/thing", content=b'{"a": "\x80"}')
        good = client.post("/api/thing", content='{"city": "Malmö"}'.encode())
        bug = client.post("/api/ours")

    for refused in (latin1, lone):
        assert refused.status_code == 400, refused.text
        assert refused.json()["extra"] == [{"message": "is not UTF-8", "key": "body", "source": "body"}]
    assert good.status_code == 201
    assert bug.status_code == 500


def test_a_refusals_logged_reason_is_redacted_before_it_is_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    """The reason is cut at 500 characters; cut first, an email at the cut lost its domain and passed the
    formatter's redaction as 'ada.lovelace@' (W, session 34)."""
    from litestar import Litestar, post
    from litestar.testing import TestClient

    from apps.common.error_handlers import exception_handlers
    from apps.common.errors import InvalidField

    @post("/api/thing", sync_to_thread=False)
    def thing() -> str:
        raise InvalidField("note", "x" * 480 + " ada.lovelace@example.com")

    app = Litestar([thing], exception_handlers=exception_handlers(), logging_config=None)
    with caplog.at_level(logging.INFO, logger="apps.http"), TestClient(app) as client:
        assert client.post("/api/thing").status_code == 400
    (reason,) = [r.__dict__["reason"] for r in caplog.records if r.getMessage() == "request refused"]
    assert "ada.lovelace" not in reason and reason.endswith("<email>")
