"""The payment service's side of the saga through the real stack.

The order saga's requests (order.payment_requested / _capture_requested / _cancel_requested) are written
into order_db's outbox exactly as the order service will write them; Debezium carries them to
commerce.order; the payment consumer writes pending ledger rows; the payment worker calls the provider
sandbox; the payment.* events come back on commerce.payment through payment_db's outbox. The sandbox's own
ledger (GET /v1/ledger) says how many authorizations exist: the proof that retries never charge twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from apps.common.settings import forget_settings
from apps.common.topology import BY_NAME, PROCESSES, database_url, topic_for
from apps.payment.admin import CommandError, fail_refund, lease_s
from apps.payment.events import (
    OrderPaymentCancelRequested,
    OrderPaymentCaptureRequested,
    OrderPaymentRequested,
    PaymentMethod,
)
from apps.payment.models import PaymentOperation
from apps.payment.provider import NO_RECORD, HttpProvider, RetryPolicy
from apps.payment.services import AuthorizationRequest, PaymentService
from outbox.dead_letters import dead_letter_topic
from outbox.events import Event
from outbox.writer import add_event
from tests.support import consumers, dead_letters
from tests.support.db import db_fixture
from tests.support.http import api_client, service_url
from tests.support.kafka import Received, TopicTail
from tests.support.orders import eventually, order_engine

pytestmark = pytest.mark.usefixtures("stack")

SANDBOX = f"http://127.0.0.1:{next(p.port for p in PROCESSES if p.name == 'payment-sandbox')}"
# The consumer may be catching up on other tests' order events first.
WITHIN = 120.0

db = db_fixture("payment")


@pytest.fixture(scope="module")
async def orders(stack: None) -> AsyncIterator[AsyncEngine]:
    engine = order_engine()
    yield engine
    await engine.dispose()


@pytest.fixture
def tail() -> Iterator[TopicTail]:
    topic_tail = TopicTail(topic_for("payment"))
    try:
        yield topic_tail
    finally:
        topic_tail.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def payment_requested(order_id: uuid.UUID, token: str, amount: str = "25.00") -> OrderPaymentRequested:
    return OrderPaymentRequested(
        order_id=order_id,
        amount=Decimal(amount),
        currency="USD",
        payment_method=PaymentMethod(type="card", token=token),
        customer_id=str(uuid.uuid4()),
        requested_at=now(),
    )


async def send(engine: AsyncEngine, *events: Event) -> list[uuid.UUID]:
    """Each request in its own committed transaction of order_db's outbox, keyed by its order."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    ids = []
    for event in events:
        async with sessions() as session, session.begin():
            ids.append((await add_event(session, event.order_id, event)).event_id)  # type: ignore[attr-defined]
    return ids


async def payments_of(order_id: uuid.UUID) -> list[dict[str, Any]]:
    async with api_client(base_url=service_url("payment")) as http:
        response = await http.get("/api/payments", params={"order_id": str(order_id)})
    assert response.status_code == 200, response.text
    return list(response.json())


async def wait_for(order_id: uuid.UUID, status: str, within: float = WITHIN) -> dict[str, Any]:
    async def reached() -> bool:
        found = await payments_of(order_id)
        return len(found) == 1 and found[0]["status"] == status

    await eventually(reached, within=within, what=f"payment of {order_id} {status}")
    return (await payments_of(order_id))[0]


async def sandbox_books(order_id: uuid.UUID) -> dict[str, Any]:
    async with api_client() as http:
        response = await http.get(f"{SANDBOX}/v1/ledger", params={"reference": str(order_id)})
    assert response.status_code == 200, response.text
    return dict(response.json())


def payment_events(tail: TopicTail, order_id: uuid.UUID, *expected: str) -> list[Received]:
    """The order's payment.* events, once every expected type arrived (keyed by the order id)."""

    def mine(seen: list[Received]) -> list[Received]:
        return [r for r in seen if r.key == str(order_id)]

    def arrived(seen: list[Received]) -> bool:
        return all(t in {r.headers["event_type"] for r in mine(seen)} for t in expected)

    return mine(tail.read_until(arrived, timeout=WITHIN))


def kinds(payment: dict[str, Any]) -> list[tuple[str, str]]:
    return [(op["kind"], op["outcome"]) for op in payment["operations"]]


async def test_authorize_capture_and_refund_on_cancel(orders: AsyncEngine, tail: TopicTail) -> None:
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, "tok_visa", "25.00"))
    authorized = await wait_for(order_id, "authorized")
    assert (authorized["amount"], authorized["provider"]) == ("25.00", "sandbox")
    assert authorized["provider_reference"].startswith("auth_")
    await send(orders, OrderPaymentCaptureRequested(order_id=order_id, requested_at=now()))
    await wait_for(order_id, "captured")
    await send(orders, OrderPaymentCancelRequested(order_id=order_id, reason="customer_request", requested_at=now()))
    refunded = await wait_for(order_id, "refunded")
    assert (refunded["captured_amount"], refunded["refunded_amount"]) == ("25.00", "25.00")
    assert kinds(refunded) == [("authorize", "succeeded"), ("capture", "succeeded"), ("refund", "succeeded")]
    events = payment_events(tail, order_id, "payment.authorized", "payment.captured", "payment.refunded")
    assert [r.headers["event_type"] for r in events] == ["payment.authorized", "payment.captured", "payment.refunded"]
    authorized_event = json.loads(events[0].value)
    assert (authorized_event["payment_id"], authorized_event["amount"]) == (authorized["id"], "25.00")
    books = await sandbox_books(order_id)
    assert [a["status"] for a in books["authorizations"]] == ["refunded"]
    assert books["live_authorizations"] == 0


async def test_a_declined_card_is_declined_and_nothing_is_held(orders: AsyncEngine, tail: TopicTail) -> None:
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, "tok_chargeDeclined"))
    declined = await wait_for(order_id, "declined")
    assert declined["failure_code"] == "card_declined"
    event = json.loads(payment_events(tail, order_id, "payment.declined")[0].value)
    assert (event["decline_code"], event["order_id"]) == ("card_declined", str(order_id))
    assert (await sandbox_books(order_id))["authorizations"] == []


async def test_transient_provider_errors_end_in_one_charge(orders: AsyncEngine) -> None:
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, "tok_flaky"))
    authorized = await wait_for(order_id, "authorized")
    books = await sandbox_books(order_id)
    assert len(books["authorizations"]) == 1
    assert books["live_authorizations"] == 1
    # Three calls with one key: two 503s, then the approval.
    assert [r["status_code"] for r in books["authorizations"][0]["requests"]] == [503, 503, 201]
    assert kinds(authorized) == [("authorize", "succeeded")]


async def test_a_repeated_request_is_one_payment_and_one_charge(orders: AsyncEngine, db: asyncpg.Connection) -> None:
    order_id = uuid.uuid4()
    request = payment_requested(order_id, "tok_visa")
    event_ids = await send(orders, request, request)
    await wait_for(order_id, "authorized")

    async def both_applied() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer_group = 'payment' AND event_id = ANY($1::uuid[])", event_ids
        )
        return bool(count == 2)

    await eventually(both_applied, within=WITHIN, what="both requests applied")
    assert len(await payments_of(order_id)) == 1
    assert len((await sandbox_books(order_id))["authorizations"]) == 1


async def test_cancel_after_authorization_voids(orders: AsyncEngine, tail: TopicTail) -> None:
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, "tok_visa"))
    await wait_for(order_id, "authorized")
    await send(orders, OrderPaymentCancelRequested(order_id=order_id, reason="out_of_stock", requested_at=now()))
    voided = await wait_for(order_id, "voided")
    assert voided["cancel_reason"] == "out_of_stock"
    event = json.loads(payment_events(tail, order_id, "payment.voided")[-1].value)
    assert event["reason"] == "out_of_stock"
    assert (await sandbox_books(order_id))["live_authorizations"] == 0


@pytest.mark.slow
async def test_a_late_authorization_after_cancel_is_voided(
    orders: AsyncEngine, tail: TopicTail, db: asyncpg.Connection
) -> None:
    """tok_delayed answers after the sandbox's delay (5 s, more than one call's 3 s timeout); the order gave
    up before and asked to cancel."""
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, "tok_delayed"))
    await send(orders, OrderPaymentCancelRequested(order_id=order_id, reason="timeout", requested_at=now()))
    voided = await wait_for(order_id, "voided")
    assert kinds(voided) == [("authorize", "succeeded"), ("void", "succeeded")]
    types = [r.headers["event_type"] for r in payment_events(tail, order_id, "payment.voided")]
    assert types == ["payment.authorized", "payment.voided"]
    # Late indeed: the cancel was recorded before the provider's answer to the authorization.
    late = await db.fetchval(
        "SELECT p.cancel_requested_at < o.completed_at FROM payments p JOIN payment_operations o "
        "ON o.payment_id = p.id AND o.kind = 'authorize' WHERE p.order_id = $1",
        order_id,
    )
    assert late is True
    books = await sandbox_books(order_id)
    assert len(books["authorizations"]) == 1
    assert books["live_authorizations"] == 0


async def test_capture_without_an_authorized_payment_is_refused(orders: AsyncEngine, tail: TopicTail) -> None:
    order_id = uuid.uuid4()
    await send(orders, OrderPaymentCaptureRequested(order_id=order_id, requested_at=now()))
    event = json.loads(payment_events(tail, order_id, "payment.capture_failed")[0].value)
    assert (event.get("payment_id"), event["reason"]) == (None, "no_authorized_payment")


async def test_a_request_breaking_the_contract_is_dead_lettered(orders: AsyncEngine, db: asyncpg.Connection) -> None:
    order_id = uuid.uuid4()

    async def dead_lettered() -> bool:
        outcome = await db.fetchval(
            "SELECT outcome FROM inbox WHERE consumer_group = 'payment' AND event_id = $1", event_id
        )
        return bool(outcome == "dead_lettered")

    letters = TopicTail(dead_letter_topic("payment"))
    try:
        [event_id] = await send(orders, payment_requested(order_id, "tok_visa", amount="-5.00"))
        await eventually(dead_lettered, within=WITHIN, what="the bad request dead-lettered")
        seen = await asyncio.to_thread(letters.read_until, lambda seen: str(event_id) in {r.event_id for r in seen})
    finally:
        letters.close()
    assert await payments_of(order_id) == []
    [letter] = [r for r in seen if r.event_id == str(event_id)]
    assert (letter.headers["dlq.error_type"], "amount" in letter.headers["dlq.error"]) == ("RejectedEvent", True)
    # Read and checked: this test's own letter is handled, so DeadLettersPending never means a test's poison.
    await asyncio.to_thread(dead_letters.acknowledge, "payment", {event_id})


async def test_a_crash_between_the_provider_call_and_the_commit_is_recovered_with_the_same_key() -> None:
    """The worker called the provider and died before writing the answer: the row is still pending. The
    next claim calls again with the same key; the sandbox replays its first answer, no second charge."""
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=2)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    order_id = uuid.uuid4()
    key = f"test:{order_id}"
    try:
        async with sessions() as session:
            request = AuthorizationRequest(order_id, Decimal("9.99"), "USD", "card", "tok_visa", key, "sandbox")
            await PaymentService(session).request_authorization(request)
            # As if the dead worker had claimed it: leased for a few seconds.
            await session.execute(
                update(PaymentOperation)
                .where(PaymentOperation.idempotency_key == key)
                .values(next_attempt_at=now() + dt.timedelta(seconds=3), attempts=1)
            )
            await session.commit()
        async with aiohttp.ClientSession(base_url=SANDBOX) as http:
            answered = await HttpProvider(http).authorize(
                key=key, amount_minor=999, currency="USD", token="tok_visa", reference=str(order_id)
            )
        assert answered.outcome == "succeeded"
        assert (await payments_of(order_id))[0]["status"] == "pending"
        authorized = await wait_for(order_id, "authorized")
        assert authorized["provider_reference"] == answered.reference
        books = await sandbox_books(order_id)
        assert len(books["authorizations"]) == 1
        assert [r["replayed"] for r in books["authorizations"][0]["requests"]] == [0, 1]
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_the_worker_killed_mid_call_leaves_the_row_pending_and_its_successor_charges_once(
    orders: AsyncEngine, db: asyncpg.Connection
) -> None:
    """SIGKILL the payment worker while it waits on the provider (tok_delayed): the ledger row stays pending
    under the dead worker's lease; once the lease is over (here: ended by the test instead of waited for),
    the restarted worker asks again with the same key and the sandbox holds one authorization."""
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, "tok_delayed"))
    query = (
        "SELECT o.attempts FROM payment_operations o JOIN payments p ON p.id = o.payment_id "
        "WHERE p.order_id = $1 AND o.kind = 'authorize' AND o.outcome = 'pending'"
    )

    async def claimed() -> bool:
        return bool((await db.fetchval(query, order_id) or 0) >= 1)

    await eventually(claimed, within=WITHIN, what="the authorization claimed by the worker")
    await consumers.kill("payment-worker")
    try:
        assert (await payments_of(order_id))[0]["status"] == "pending"
        await db.execute(
            "UPDATE payment_operations o SET next_attempt_at = now() FROM payments p "
            "WHERE p.id = o.payment_id AND p.order_id = $1 AND o.outcome = 'pending'",
            order_id,
        )
    finally:
        await consumers.start("payment-worker")
    authorized = await wait_for(order_id, "authorized")
    assert kinds(authorized) == [("authorize", "succeeded")]
    books = await sandbox_books(order_id)
    assert len(books["authorizations"]) == 1
    requests = books["authorizations"][0]["requests"]
    assert requests[0]["replayed"] == 0
    assert all(r["replayed"] == 1 for r in requests[1:])
    assert len(requests) >= 2


async def unanswered_refund(orders: AsyncEngine, db: asyncpg.Connection, token: str) -> tuple[uuid.UUID, uuid.UUID]:
    """An order's captured payment whose cancellation refund the sandbox never answers (every POST a 503):
    (order id, the refund's ledger id), once the worker has asked at least twice and left it pending."""
    order_id = uuid.uuid4()
    await send(orders, payment_requested(order_id, token, "25.00"))
    await wait_for(order_id, "authorized")
    await send(orders, OrderPaymentCaptureRequested(order_id=order_id, requested_at=now()))
    await wait_for(order_id, "captured")
    await send(orders, OrderPaymentCancelRequested(order_id=order_id, reason="customer_request", requested_at=now()))
    query = (
        "SELECT o.id FROM payment_operations o JOIN payments p ON p.id = o.payment_id "
        "WHERE p.order_id = $1 AND o.kind = 'refund' AND o.outcome = 'pending' AND o.attempts >= 2"
    )

    async def asked_twice() -> bool:
        return await db.fetchval(query, order_id) is not None

    await eventually(asked_twice, within=WITHIN, what="the refund asked twice, unanswered")
    return order_id, await db.fetchval(query, order_id)


async def between_calls(db: asyncpg.Connection, refund_id: uuid.UUID) -> None:
    """Until the worker's call on the refund has answered and its next claim is not imminent.

    unanswered_refund returns as the worker claims its second attempt (the claim counts it), so a hold then
    lands on a call in flight, whose answer moves the row: the command's first round is spent and it waits a
    second lease (62 s in all). Those rounds are test_a_hold_overtaken_by_an_answer_in_flight_holds_again's."""

    async def backing_off() -> bool:
        return bool(
            await db.fetchval(
                "SELECT next_attempt_at > now() + interval '0.3 seconds' "
                "AND next_attempt_at < now() + make_interval(secs => $2) "
                "FROM payment_operations WHERE id = $1 AND outcome = 'pending'",
                refund_id,
                lease_s() / 2,
            )
        )

    await eventually(backing_off, within=WITHIN, what="the worker's call on the refund answered")


async def past_the_deadline(db: asyncpg.Connection, refund_id: uuid.UUID) -> None:
    """As if the refund was asked an hour ago (PAYMENT_REFUND_STATUS_AFTER_S is 900), due now."""
    await db.execute(
        "UPDATE payment_operations SET created_at = now() - interval '1 hour', next_attempt_at = now() "
        "WHERE id = $1 AND outcome = 'pending'",
        refund_id,
    )


async def test_a_refund_never_answered_is_asked_about_past_the_deadline_and_settled(
    orders: AsyncEngine, db: asyncpg.Connection, tail: TopicTail
) -> None:
    """tok_refundNoAnswer: the sandbox made the refund but every answer was lost (503). Before session 28
    the ledger row stayed pending for good. Past the deadline the worker asks GET /v1/refunds for its key,
    learns it succeeded, and applies it as an answer: refunded, payment.refunded, one refund at the sandbox."""
    order_id, refund_id = await unanswered_refund(orders, db, "tok_refundNoAnswer")
    assert (await payments_of(order_id))[0]["status"] == "captured"
    await past_the_deadline(db, refund_id)
    refunded = await wait_for(order_id, "refunded")
    assert ("refund", "succeeded") in kinds(refunded)
    payment_events(tail, order_id, "payment.refunded")
    [auth] = (await sandbox_books(order_id))["authorizations"]
    assert [r["amount"] for r in auth["refunds"]] == [2500]


async def test_a_refund_the_provider_never_made_is_failed_past_the_deadline(
    orders: AsyncEngine, db: asyncpg.Connection, tail: TopicTail
) -> None:
    """tok_refundUnreachable: no refund was ever made. Past the deadline the provider answers "no refund
    under that key" (404): the refund is failed (refund_unknown_to_provider), payment.refund_failed follows,
    the payment stays captured and its key is never sent again."""
    order_id, refund_id = await unanswered_refund(orders, db, "tok_refundUnreachable")
    await past_the_deadline(db, refund_id)

    async def failed() -> bool:
        ops = (await payments_of(order_id))[0]["operations"]
        return any(op["id"] == str(refund_id) and op["outcome"] == "failed" for op in ops)

    await eventually(failed, within=WITHIN, what="the unknown refund failed")
    payment = (await payments_of(order_id))[0]
    assert payment["status"] == "captured"
    [refund] = [op for op in payment["operations"] if op["id"] == str(refund_id)]
    assert refund["error"] == NO_RECORD
    events = payment_events(tail, order_id, "payment.refund_failed")
    reasons = [json.loads(r.value)["reason"] for r in events if r.headers["event_type"] == "payment.refund_failed"]
    assert reasons == [NO_RECORD]
    [auth] = (await sandbox_books(order_id))["authorizations"]
    assert auth["refunds"] == [] and auth["amount_refunded"] == 0


async def test_an_operator_fails_a_refund_the_provider_cannot_be_asked_about_audited(
    orders: AsyncEngine, db: asyncpg.Connection, tail: TopicTail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`just refunds fail ID --by --reason`: the provider does not answer the status query either (here: a
    provider URL nobody listens on), so the refund is failed on the operator's word, after the worker's
    call in flight (its lease) is over; who and why are on the ledger row and in payment.refund_failed.

    The command runs its default hold (no settle_s: the lease from PAYMENT_WORKER_LEASE_S, checked against
    the provider policy from PAYMENT_PROVIDER_TIMEOUT_S/ATTEMPTS, then held lease + 1 s), with those read
    from this process's environment set to the policy of the provider it is given (0.5 s x 2) and a 3-s
    lease: the stack's 30 s would make the hold alone 31 s. between_calls (with the worker's own lease) has
    already seen the worker's call answered, as before."""
    order_id, refund_id = await unanswered_refund(orders, db, "tok_refundUnreachable")
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    reason = "failed by hand by ops@example.com: provider support: no such refund (ticket 42)"
    await between_calls(db, refund_id)
    monkeypatch.setenv("PAYMENT_WORKER_LEASE_S", "3")
    monkeypatch.setenv("PAYMENT_PROVIDER_TIMEOUT_S", "0.5")
    monkeypatch.setenv("PAYMENT_PROVIDER_ATTEMPTS", "2")
    forget_settings()  # read again, as a `just refunds fail` started with them would
    try:
        async with aiohttp.ClientSession(base_url="http://127.0.0.1:9") as dead:
            provider = HttpProvider(dead, policy=RetryPolicy(timeout_s=0.5, max_attempts=2, backoff_s=0.01))
            started = time.monotonic()
            result = await fail_refund(
                sessions,
                provider,
                refund_id,
                by="ops@example.com",
                reason="provider support: no such refund (ticket 42)",
            )
            assert time.monotonic() - started >= lease_s() + 1.0, "the default hold waits out one lease"
            assert (result.outcome, result.code) == ("failed", reason)
            with pytest.raises(CommandError, match="not a pending refund"):  # once is all
                await fail_refund(sessions, provider, refund_id, by="ops@example.com", reason="again")
    finally:
        await engine.dispose()
    row = await db.fetchrow("SELECT outcome, error, response FROM payment_operations WHERE id = $1", refund_id)
    assert (row["outcome"], row["error"]) == ("failed", reason)
    operator = json.loads(row["response"])["operator"]
    assert (operator["by"], operator["provider_answered"]) == ("ops@example.com", False)
    events = payment_events(tail, order_id, "payment.refund_failed")
    reasons = [json.loads(r.value)["reason"] for r in events if r.headers["event_type"] == "payment.refund_failed"]
    assert reasons == [reason]


async def test_a_hold_overtaken_by_an_answer_in_flight_holds_again(orders: AsyncEngine, db: asyncpg.Connection) -> None:
    """The operator's hold taken while the worker's call is in flight (as unanswered_refund returns, the
    worker has just claimed its second attempt): the call's answer ("unknown", a 503) moves the row's due
    time, so the first round is not settled and the command holds again; the second round settles it and the
    refund is failed on the operator's word. The settle time is the worker's call's length and then some
    (its four 503s take under a second), not the lease, which the test above waits out."""
    _, refund_id = await unanswered_refund(orders, db, "tok_refundUnreachable")
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    settle_s = 3.0
    try:
        async with aiohttp.ClientSession(base_url="http://127.0.0.1:9") as dead:
            provider = HttpProvider(dead, policy=RetryPolicy(timeout_s=0.5, max_attempts=2, backoff_s=0.01))
            started = time.monotonic()
            result = await fail_refund(
                sessions, provider, refund_id, by="ops@example.com", reason="r", settle_s=settle_s
            )
            elapsed = time.monotonic() - started
    finally:
        await engine.dispose()
    assert (result.outcome, result.code) == ("failed", "failed by hand by ops@example.com: r")
    assert elapsed >= 2 * settle_s, f"settled in one round ({elapsed:.1f} s): the hold did not meet a call in flight"
