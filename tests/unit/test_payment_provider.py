"""Unit tests for the HTTP provider adapter (apps/payment/provider.py) against a scripted local server:
transient failures are retried with the same idempotency key, definite answers are not, and an answer
that never comes is UNKNOWN (pending) rather than a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from apps.common.settings import forget_settings
from apps.payment.provider import NO_RECORD, HttpProvider, ProviderResult, RetryPolicy
from apps.payment.rules import OP_DECLINED, OP_FAILED, PENDING, SUCCEEDED

pytestmark = pytest.mark.unit

Start = Callable[["Script"], Awaitable[HttpProvider]]
FAST = RetryPolicy(timeout_s=0.3, max_attempts=4, backoff_s=0.01, backoff_cap_s=0.05)


Answer = tuple[int, dict[str, object] | bytes, float]  # status, JSON body (or raw bytes), delay before answering (s)


@dataclass
class Script:
    """The answers the fake provider gives, in order (the last one repeats), and the keys it saw."""

    answers: list[Answer]
    keys: list[str] = field(default_factory=list)
    bodies: list[object] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.keys.append(request.headers.get("Idempotency-Key", request.query.get("idempotency_key", "")))
        self.bodies.append(await request.json() if request.body_exists else None)
        status, body, delay = self.answers[min(len(self.keys), len(self.answers)) - 1]
        if delay:
            await asyncio.sleep(delay)
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, content_type="application/json")
        return web.json_response(body, status=status)


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(script: Script) -> HttpProvider:
        app = web.Application()
        app.router.add_post("/{tail:.*}", script.handle)
        app.router.add_get("/{tail:.*}", script.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        sessions.append(session)
        return HttpProvider(session, policy=FAST)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


AUTHORIZED: Answer = (201, {"id": "auth_1", "status": "authorized"}, 0.0)
UNAVAILABLE: Answer = (503, {"error": {"code": "service_unavailable"}}, 0.0)


async def authorize(provider: HttpProvider, key: str = "key-1") -> ProviderResult:
    return await provider.authorize(key=key, amount_minor=1234, currency="USD", token="tok_x", reference="o1")


async def test_transient_failures_are_retried_with_the_same_key(serve: Start) -> None:
    script = Script([UNAVAILABLE, UNAVAILABLE, AUTHORIZED])
    provider = await serve(script)
    result = await authorize(provider)
    assert (result.outcome, result.reference, result.attempts) == (SUCCEEDED, "auth_1", 3)
    assert script.keys == ["key-1"] * 3
    assert script.bodies[0] == {"amount": 1234, "currency": "USD", "source": "tok_x", "reference": "o1"}
    assert script.bodies.count(script.bodies[0]) == 3


async def test_a_request_in_progress_is_retried(serve: Start) -> None:
    in_progress: Answer = (409, {"error": {"code": "idempotency_request_in_progress"}}, 0.0)
    script = Script([in_progress, AUTHORIZED])
    result = await authorize(await serve(script))
    assert result.outcome == SUCCEEDED
    assert len(script.keys) == 2


async def test_a_proxy_timeout_is_asked_again_with_the_same_key(serve: Start) -> None:
    """A 408 says only that something in front of the provider stopped waiting: the refund or charge may have
    been made, so it is not a definite failure (session 33, W)."""
    script = Script([(408, {"error": {"code": "request_timeout"}}, 0.0), AUTHORIZED])
    result = await authorize(await serve(script))
    assert (result.outcome, result.attempts) == (SUCCEEDED, 2)
    assert script.keys == ["key-1"] * 2
    only_timeouts = Script([(408, {}, 0.0)] * FAST.max_attempts)
    assert (await authorize(await serve(only_timeouts))).outcome == PENDING  # unknown, asked again later


async def test_an_answer_that_is_not_utf8_reads_as_one_that_is_not_json(serve: Start) -> None:
    """msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8: it escaped the adapter
    (a 500 for the caller, an operation failed with a traceback in the worker) instead of reading as an
    unreadable answer (W, session 34)."""
    not_json = await authorize(await serve(Script([(201, b"<html>", 0.0)])))
    not_utf8 = await authorize(await serve(Script([(201, b'{"id": "\xe9", "status": "authorized"}', 0.0)])))
    assert (not_utf8.outcome, not_utf8.code, not_utf8.attempts) == (not_json.outcome, not_json.code, 1)
    assert not_utf8.response == not_json.response == {"error": {"code": "unreadable_answer"}}


async def test_a_decline_is_definite_and_not_retried(serve: Start) -> None:
    script = Script([(402, {"error": {"type": "card_error", "code": "card_declined"}}, 0.0)])
    result = await authorize(await serve(script))
    assert (result.outcome, result.code) == (OP_DECLINED, "card_declined")
    assert len(script.keys) == 1


async def test_a_client_error_is_a_definite_failure(serve: Start) -> None:
    script = Script([(400, {"error": {"code": "token_invalid"}}, 0.0)])
    result = await authorize(await serve(script))
    assert (result.outcome, result.code) == (OP_FAILED, "token_invalid")
    assert len(script.keys) == 1


async def test_no_answer_in_time_is_unknown_after_bounded_attempts(serve: Start) -> None:
    script = Script([(201, {"id": "auth_late"}, 1.0)])
    started = asyncio.get_running_loop().time()
    result = await authorize(await serve(script))
    elapsed = asyncio.get_running_loop().time() - started
    assert result.outcome == PENDING
    assert result.attempts == FAST.max_attempts
    assert script.keys == ["key-1"] * FAST.max_attempts
    # Bounded: attempts x timeout plus the capped backoff, nowhere near the server's delay x attempts.
    assert elapsed < FAST.max_attempts * FAST.timeout_s + FAST.max_attempts * FAST.backoff_cap_s + 0.5


async def test_an_unreachable_provider_is_unknown() -> None:
    async with aiohttp.ClientSession(base_url="http://127.0.0.1:9") as session:
        result = await authorize(HttpProvider(session, policy=FAST))
    assert result.outcome == PENDING


async def test_a_refund_status_query_names_the_key_and_retries_transient_answers(serve: Start) -> None:
    """GET /v1/refunds?idempotency_key=: a 503 is asked again; 404 resource_missing is a definite "no such
    refund" (failed, NO_RECORD); no answer at all stays unknown (pending)."""
    script = Script([UNAVAILABLE, (200, {"id": "re_1", "status": "succeeded"}, 0.0)])
    provider = await serve(script)
    answered = await provider.refund_status(key="pay:refund:k1")
    assert (answered.outcome, answered.reference, answered.attempts) == (SUCCEEDED, "re_1", 2)
    assert script.keys == ["pay:refund:k1"] * 2 and script.bodies == [None, None]

    missing = await (await serve(Script([(404, {"error": {"code": "resource_missing"}}, 0.0)]))).refund_status(key="k")
    assert (missing.outcome, missing.code) == (OP_FAILED, NO_RECORD)
    silent = await (await serve(Script([UNAVAILABLE]))).refund_status(key="k")
    assert silent.outcome == PENDING and not silent.known


def test_a_call_must_end_within_the_lease_every_caller_assumes() -> None:
    """The worker's lease, the API's and `just refunds fail`'s wait assume a call is over by then (session 29):
    4 attempts of 3 s with 0.1/0.2/0.4 s between them is 12.7 s, under 30; 4 of 10 s is not."""
    assert RetryPolicy().longest_s() == pytest.approx(12.7)
    RetryPolicy().check_within(30.0, "PAYMENT_WORKER_LEASE_S")
    with pytest.raises(ValueError, match=r"may take 40.7 s .* not under PAYMENT_WORKER_LEASE_S \(30 s\)"):
        RetryPolicy(timeout_s=10.0).check_within(30.0, "PAYMENT_WORKER_LEASE_S")
    with pytest.raises(ValueError):
        RetryPolicy(timeout_s=3.0, max_attempts=10).check_within(30.0, "lease")  # 30 + backoff


def test_the_worker_refuses_to_start_with_a_lease_shorter_than_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.payment import worker

    monkeypatch.setenv("PAYMENT_PROVIDER_TIMEOUT_S", "10")
    forget_settings()
    with pytest.raises(SystemExit, match="PAYMENT_WORKER_LEASE_S"):
        asyncio.run(worker.serve(None))
