"""The payment service's ledger for a return's refund (apps/payment/returns.py) on its real database: each
test writes a payment of its own and drives the consumer's handlers in ONE transaction that it rolls back,
so the worker never sees a row and no event leaves. What is checked is the ledger a handler leaves:
never two refunds asked of the provider for one return, however the events come again."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.models import utc_now
from apps.common.topology import BY_NAME, database_url
from apps.payment.models import Payment, PaymentOperation
from apps.payment.returns import refund_for_return, retry_refund_for_return
from apps.payment.rules import CAPTURED, OP_FAILED, PENDING, REFUND
from apps.returns.events import RefundOrder, ReturnRefundRetryRequested
from outbox.models import OUTBOX_TABLE

pytestmark = pytest.mark.usefixtures("stack")

ASKED = Decimal("30.00")


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=1)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            try:
                yield session
            finally:
                await session.rollback()  # nothing of a test is ever committed
    finally:
        await engine.dispose()


async def captured_payment(session: AsyncSession, amount: Decimal = Decimal("100.00")) -> Payment:
    """A captured payment of a new order, without a provider reference (the worker could not call for it)."""
    now = utc_now() - dt.timedelta(minutes=5)
    payment = Payment(
        id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        amount=amount,
        currency="USD",
        status=CAPTURED,
        provider="sandbox",
        provider_reference=None,
        payment_method_type="card",
        idempotency_key=f"test-ledger:{uuid.uuid4()}",
        captured_amount=amount,
        refunded_amount=Decimal(0),
        created_at=now,
        updated_at=now,
    )
    session.add(payment)
    await session.flush()
    return payment


async def by_hand(session: AsyncSession, payment: Payment, amount: Decimal) -> uuid.UUID:
    """A refund asked over HTTP (POST /api/payments/{id}/refund's ledger row), still awaiting the provider."""
    op_id = uuid.uuid4()
    now = utc_now()
    session.add(
        PaymentOperation(
            id=op_id,
            payment_id=payment.id,
            kind=REFUND,
            idempotency_key=f"{payment.id}:refund:{uuid.uuid4()}",
            amount=amount,
            outcome=PENDING,
            reason="by hand",
            request={"requested_amount": str(amount), "reason": "by hand"},
            attempts=1,
            next_attempt_at=now + dt.timedelta(seconds=30),
            created_at=now,
        )
    )
    await session.flush()
    return op_id


async def refunds(session: AsyncSession, payment: Payment) -> list[tuple[uuid.UUID, str, Decimal]]:
    rows = await session.scalars(
        select(PaymentOperation)
        .where(PaymentOperation.payment_id == payment.id, PaymentOperation.kind == REFUND)
        .order_by(PaymentOperation.created_at, PaymentOperation.id)
        .execution_options(populate_existing=True)
    )
    return [(op.id, op.outcome, op.amount) for op in rows]


async def answers(session: AsyncSession, payment: Payment) -> list[str]:
    """The payment.* events written (in this transaction) for the payment's order."""
    query = text(f"SELECT event_type FROM {OUTBOX_TABLE} WHERE aggregate_id = :order_id ORDER BY event_type")
    return list(await session.scalars(query, {"order_id": payment.order_id}))


def retry_of(
    payment: Payment, return_id: uuid.UUID, earlier: list[uuid.UUID], asked_at: dt.datetime
) -> ReturnRefundRetryRequested:
    return ReturnRefundRetryRequested(
        return_id=return_id,
        return_number="RET-TEST",
        order_id=payment.order_id,
        customer_id="c-ledger",
        refund=RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="return RET-TEST"),
        earlier_refund_ids=earlier,
        refund_asked_at=asked_at,
        requested_at=utc_now(),
    )


async def test_a_refused_refund_redelivered_after_its_retry_refunded_asks_nothing_again(session: AsyncSession) -> None:
    """The return's first refund is refused because a refund by hand awaits its answer (what is refundable
    is then too little); the one by hand fails, staff retry, the retry's refund is asked. return.received
    coming again (a redelivery, a replay) must not find the first refund unasked: that would be a second
    refund of the same return at the provider."""
    payment = await captured_payment(session)
    hand = await by_hand(session, payment, Decimal("80.00"))
    return_id, first = uuid.uuid4(), RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    asked_at = utc_now()
    await refund_for_return(session, payment.order_id, return_id, first)
    assert await answers(session, payment) == ["payment.refund_failed"]
    await session.execute(update(PaymentOperation).where(PaymentOperation.id == hand).values(outcome=OP_FAILED))

    retry = retry_of(payment, return_id, [first.refund_id], asked_at)
    await retry_refund_for_return(session, retry)
    await refund_for_return(session, payment.order_id, return_id, first)  # return.received again

    ledger = await refunds(session, payment)
    pending = [op_id for op_id, outcome, _ in ledger if outcome == PENDING]
    assert pending == [retry.refund.refund_id], ledger
    assert (first.refund_id, OP_FAILED, ASKED) in ledger
    assert await answers(session, payment) == ["payment.refund_failed"]  # the replay answered nothing new


async def test_a_retry_while_a_refund_by_hand_awaits_its_answer_is_refused_not_refunded_twice(
    session: AsyncSession,
) -> None:
    """Staff refunded the return by hand (its answer not in yet: the provider is slow) and another clicks
    retry: asking the provider for the whole again would refund it twice if the one by hand goes through."""
    payment = await captured_payment(session)
    return_id, first = uuid.uuid4(), RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    asked_at = utc_now() - dt.timedelta(minutes=1)
    session.add(
        PaymentOperation(
            id=first.refund_id,
            payment_id=payment.id,
            kind=REFUND,
            idempotency_key=f"{payment.id}:refund:return:{first.refund_id}",
            amount=ASKED,
            outcome="declined",
            reason="r",
            request={"reason": "r", "return_id": str(return_id), "return_amount": str(ASKED)},
            attempts=1,
            next_attempt_at=asked_at,
            created_at=asked_at,
            completed_at=asked_at,
        )
    )
    hand = await by_hand(session, payment, ASKED)

    retry = retry_of(payment, return_id, [first.refund_id], asked_at)
    await retry_refund_for_return(session, retry)

    ledger = await refunds(session, payment)
    assert [op_id for op_id, outcome, _ in ledger if outcome == PENDING] == [hand], ledger
    assert (retry.refund.refund_id, OP_FAILED, ASKED) in ledger
    assert await answers(session, payment) == ["payment.refund_failed"]


async def test_one_refund_by_hand_settles_one_of_two_returns_retried(session: AsyncSession) -> None:
    """Two returns of the order, both refused; staff refund one return's amount by hand and retry both: the
    refund by hand settles the first retry (its 0.00 row counts it in settled_by), the second finds it
    counted already and asks the provider for its own refund."""
    payment = await captured_payment(session)
    asked_at = utc_now() - dt.timedelta(minutes=1)
    hand = await by_hand(session, payment, ASKED)
    await session.execute(update(PaymentOperation).where(PaymentOperation.id == hand).values(outcome="succeeded"))
    first, second = (retry_of(payment, uuid.uuid4(), [], asked_at) for _ in range(2))
    await retry_refund_for_return(session, first)
    await retry_refund_for_return(session, second)

    ledger = await refunds(session, payment)
    assert (first.refund.refund_id, "succeeded", Decimal("0.00")) in ledger
    assert (second.refund.refund_id, PENDING, ASKED) in ledger
    settled = await session.get(PaymentOperation, first.refund.refund_id, populate_existing=True)
    assert settled is not None and settled.request["settled_by"] == {str(hand): str(ASKED)}
    assert await answers(session, payment) == ["payment.refunded"]
