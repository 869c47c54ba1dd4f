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

from apps.common.errors import InconsistentFields, StateConflict
from apps.common.models import utc_now
from apps.common.topology import BY_NAME, database_url
from apps.payment.models import Payment, PaymentOperation
from apps.payment.returns import refund_for_return, retry_refund_for_return
from apps.payment.rules import CAPTURED, OP_FAILED, PENDING, REFUND, SUCCEEDED
from apps.payment.services import PaymentService
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


async def refund_row(
    session: AsyncSession,
    payment: Payment,
    key: str,
    amount: Decimal,
    request: dict[str, str],
    *,
    op_id: uuid.UUID | None = None,
    outcome: str = PENDING,
    at: dt.datetime | None = None,
) -> uuid.UUID:
    """A refund operation of ``payment`` as the services write one (pending: leased for 30 s)."""
    op_id, at = op_id or uuid.uuid4(), at or utc_now()
    session.add(
        PaymentOperation(
            id=op_id,
            payment_id=payment.id,
            kind=REFUND,
            idempotency_key=key,
            amount=amount,
            outcome=outcome,
            reason=request["reason"],
            request=request,
            attempts=1,
            next_attempt_at=at + dt.timedelta(seconds=30) if outcome == PENDING else at,
            created_at=at,
            completed_at=None if outcome == PENDING else at,
        )
    )
    await session.flush()
    return op_id


async def by_hand(session: AsyncSession, payment: Payment, amount: Decimal) -> uuid.UUID:
    """A refund asked over HTTP (POST /api/payments/{id}/refund's ledger row), still awaiting the provider."""
    request = {"requested_amount": str(amount), "reason": "by hand"}
    return await refund_row(session, payment, f"{payment.id}:refund:{uuid.uuid4()}", amount, request)


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
    payment: Payment,
    return_id: uuid.UUID,
    earlier: list[uuid.UUID],
    asked_at: dt.datetime,
    settle_with: list[uuid.UUID] | None = None,
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
        settle_with=settle_with or [],
    )


async def answered(session: AsyncSession, op_id: uuid.UUID, outcome: str, *, at: dt.datetime | None = None) -> None:
    """The provider's answer to a refund by hand (and, given ``at``, when it was asked)."""
    values: dict[str, object] = {"outcome": outcome, **({"created_at": at} if at else {})}
    await session.execute(update(PaymentOperation).where(PaymentOperation.id == op_id).values(**values))


async def returns_first_refund_refused(
    session: AsyncSession, payment: Payment
) -> tuple[uuid.UUID, RefundOrder, dt.datetime]:
    """A return whose first refund the payment refused (its refund_failed), as return.received left it."""
    return_id, first = uuid.uuid4(), RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    asked_at = utc_now()
    await refund_for_return(session, payment.order_id, return_id, first)
    return return_id, first, asked_at


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
    request = {"reason": "r", "return_id": str(return_id), "return_amount": str(ASKED)}
    key = f"{payment.id}:refund:return:{first.refund_id}"
    await refund_row(session, payment, key, ASKED, request, op_id=first.refund_id, outcome="declined", at=asked_at)
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


async def test_a_refund_by_hand_made_before_the_return_asked_settles_its_retry_once_staff_name_it(
    session: AsyncSession,
) -> None:
    """Staff refunded the whole order by hand on receipt of the complaint, before the items came back; the
    return's refund then found nothing refundable (refund_failed) and a retry never counts a refund made
    before the return asked: refund_failed for good. Named in settle_with, it settles the return (0.00
    row, settled_by), once however often the event comes; its amount left still settles another return."""
    payment = await captured_payment(session)
    hand = await by_hand(session, payment, Decimal("100.00"))
    await answered(session, hand, SUCCEEDED, at=utc_now() - dt.timedelta(minutes=2))
    await session.execute(update(Payment).where(Payment.id == payment.id).values(refunded_amount=Decimal("100.00")))
    return_id, first, asked_at = await returns_first_refund_refused(session, payment)
    assert await answers(session, payment) == ["payment.refund_failed"]

    plain = retry_of(payment, return_id, [first.refund_id], asked_at)
    await retry_refund_for_return(session, plain)  # the refund by hand is not counted: refused again
    assert (plain.refund.refund_id, OP_FAILED, ASKED) in await refunds(session, payment)

    named = retry_of(payment, return_id, [first.refund_id, plain.refund.refund_id], asked_at, [hand])
    await retry_refund_for_return(session, named)
    await retry_refund_for_return(session, named)  # a copy, a redelivery: nothing more
    ledger = await refunds(session, payment)
    assert (named.refund.refund_id, SUCCEEDED, Decimal("0.00")) in ledger
    assert [outcome for _, outcome, _ in ledger].count(PENDING) == 0, ledger  # the provider is not asked
    settled = await session.get(PaymentOperation, named.refund.refund_id, populate_existing=True)
    assert settled is not None and settled.request["settled_by"] == {str(hand): str(ASKED)}
    events = await answers(session, payment)
    assert events.count("payment.refunded") == 1 and events.count("payment.refund_failed") == 2, events

    # The same refund by hand still has 70.00 not counted: it settles another return of 30.00 named with it.
    other = retry_of(payment, uuid.uuid4(), [], asked_at, [hand])
    await retry_refund_for_return(session, other)
    again = await session.get(PaymentOperation, other.refund.refund_id, populate_existing=True)
    assert again is not None and again.request["settled_by"] == {str(hand): str(ASKED)}


async def test_a_named_refund_that_cannot_settle_the_return_refuses_its_retry_naming_it(session: AsyncSession) -> None:
    """Each fault named in refund_error (settle_with: refund X ...): a refund of another order's payment, a
    return's refund, one still awaiting the provider, one counted in full for another return already."""
    payment, elsewhere = await captured_payment(session, ASKED), await captured_payment(session)
    foreign = await by_hand(session, elsewhere, ASKED)
    await answered(session, foreign, SUCCEEDED)
    awaited = await by_hand(session, payment, ASKED)
    return_id, first, asked_at = await returns_first_refund_refused(session, payment)  # nothing left refundable
    assert (first.refund_id, OP_FAILED, ASKED) in await refunds(session, payment)
    await answered(session, awaited, OP_FAILED)
    counted = await by_hand(session, payment, ASKED)
    await answered(session, counted, SUCCEEDED)
    await retry_refund_for_return(session, retry_of(payment, uuid.uuid4(), [], asked_at, [counted]))
    still = await by_hand(session, payment, ASKED)

    for named, fault in [
        (foreign, "is no refund of this order's payment"),
        (first.refund_id, "was not made by hand"),
        (still, "still awaits the provider's answer"),
        (awaited, "did not go through (failed)"),
        (counted, "cover only 0.00 of the 30.00"),
    ]:
        retry = retry_of(payment, return_id, [first.refund_id], asked_at, [named])
        await retry_refund_for_return(session, retry)
        row = await session.get(PaymentOperation, retry.refund.refund_id, populate_existing=True)
        assert row is not None and row.outcome == OP_FAILED and row.error is not None
        assert row.error.startswith("settle_with: refund") and fault in row.error, row.error
    assert [op for op in await refunds(session, payment) if op[1] == PENDING] == [(still, PENDING, ASKED)]


async def test_a_refund_by_hand_while_a_returns_refund_awaits_the_provider_is_refused(session: AsyncSession) -> None:
    """POST /api/payments/{id}/refund's service: a return's refund (first or retried) pending on the payment
    refuses a refund by hand (409 naming it) until it is answered: both going through would refund the
    return twice. Answered, a refund by hand is taken again."""
    payment = await captured_payment(session)
    return_id = uuid.uuid4()
    first = RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    await refund_for_return(session, payment.order_id, return_id, first)
    assert [op for op in await refunds(session, payment) if op[1] == PENDING] == [(first.refund_id, PENDING, ASKED)]

    payments = PaymentService(session)
    with pytest.raises(StateConflict) as refused:
        await payments.request_refund(payment.id, ASKED, "goodwill", str(uuid.uuid4()))
    assert refused.value.field == "status"
    assert str(first.refund_id) in refused.value.message and str(return_id) in refused.value.message
    assert len(await refunds(session, payment)) == 1  # nothing written

    await answered(session, first.refund_id, OP_FAILED)
    taken = await payments.request_refund(payment.id, ASKED, "the return, by hand", str(uuid.uuid4()))
    assert (taken.id, PENDING, ASKED) in await refunds(session, payment) and taken.call


async def test_a_returns_refund_while_a_refund_by_hand_awaits_the_provider_is_refused_naming_it(
    session: AsyncSession,
) -> None:
    """The other way round from the test above (session 28): a refund by hand is pending at the provider
    when the return asks, with enough left refundable. Both went to the provider before (a double refund
    if the one by hand was this return's money). Now the return's refund is refused naming it; once it
    is answered, a retry asks the provider (or settles with it, named)."""
    payment = await captured_payment(session)
    hand = await by_hand(session, payment, Decimal("30.00"))
    return_id, first = uuid.uuid4(), RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    await refund_for_return(session, payment.order_id, return_id, first)

    ledger = await refunds(session, payment)
    assert (first.refund_id, OP_FAILED, ASKED) in ledger and [o for o in ledger if o[1] == PENDING] == [
        (hand, PENDING, Decimal("30.00"))
    ], ledger
    refused = await session.get(PaymentOperation, first.refund_id, populate_existing=True)
    assert refused is not None and refused.error is not None and str(hand) in refused.error
    assert await answers(session, payment) == ["payment.refund_failed"]

    await answered(session, hand, OP_FAILED)  # it did not go through: a plain retry asks the provider
    retry = retry_of(payment, return_id, [first.refund_id], utc_now())
    await retry_refund_for_return(session, retry)
    assert (retry.refund.refund_id, PENDING, ASKED) in await refunds(session, payment)


async def test_a_retry_while_a_refund_by_hand_made_before_the_return_asked_awaits_is_refused(
    session: AsyncSession,
) -> None:
    """A refund by hand from before the return asked, still pending at its retry: the same doubt, refused."""
    payment = await captured_payment(session)
    return_id, first, asked_at = await returns_first_refund_refused_by_provider(session, payment)
    hand = await by_hand(session, payment, Decimal("30.00"))
    await answered(session, hand, PENDING, at=asked_at - dt.timedelta(hours=1))
    retry = retry_of(payment, return_id, [first], asked_at)
    await retry_refund_for_return(session, retry)
    refused = await session.get(PaymentOperation, retry.refund.refund_id, populate_existing=True)
    assert refused is not None and refused.outcome == OP_FAILED and str(hand) in (refused.error or "")


async def test_a_refund_in_another_currency_than_its_payment_is_refused(session: AsyncSession) -> None:
    """A return's refund, its retry, a refund by hand naming a currency: never compared before (a EUR
    refund of a USD payment went to the provider as USD minor units)."""
    payment = await captured_payment(session)
    return_id = uuid.uuid4()
    first = RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="EUR", reason="r")
    await refund_for_return(session, payment.order_id, return_id, first)
    row = await session.get(PaymentOperation, first.refund_id, populate_existing=True)
    assert row is not None and row.outcome == OP_FAILED and row.error == "the refund is in EUR, the payment in USD"

    retry = retry_of(payment, return_id, [first.refund_id], utc_now())
    retry = ReturnRefundRetryRequested(
        **{**{f: getattr(retry, f) for f in retry.__struct_fields__}, "refund": RefundOrder(
            refund_id=uuid.uuid4(), amount=ASKED, currency="EUR", reason="r"
        )}
    )  # fmt: skip
    await retry_refund_for_return(session, retry)
    row = await session.get(PaymentOperation, retry.refund.refund_id, populate_existing=True)
    assert row is not None and row.outcome == OP_FAILED and "EUR" in (row.error or "")
    assert await answers(session, payment) == ["payment.refund_failed", "payment.refund_failed"]

    with pytest.raises(InconsistentFields) as refused:
        await PaymentService(session).request_refund(payment.id, ASKED, "goodwill", str(uuid.uuid4()), "EUR")
    assert (refused.value.field, refused.value.status_code) == ("currency", 422)
    taken = await PaymentService(session).request_refund(payment.id, ASKED, "goodwill", str(uuid.uuid4()), "usd")
    assert (taken.id, PENDING, ASKED) in await refunds(session, payment)


async def test_an_abandoned_retry_whose_event_comes_later_asks_nothing(session: AsyncSession) -> None:
    """Staff abandoned an awaited retry (its dead letter acknowledged) and retried: the new retry's event
    names the abandoned refund id among the earlier ones, and the payment service records it as never
    asked. If its letter is redriven (or replayed) after all, it finds that row: one refund, not two."""
    payment = await captured_payment(session)
    return_id, first, asked_at = await returns_first_refund_refused_by_provider(session, payment)
    abandoned = retry_of(payment, return_id, [first], asked_at)  # its event never applied
    replacing = retry_of(payment, return_id, [first, abandoned.refund.refund_id], asked_at)
    await retry_refund_for_return(session, replacing)
    await retry_refund_for_return(session, abandoned)  # the letter redriven after all

    ledger = await refunds(session, payment)
    assert [op_id for op_id, outcome, _ in ledger if outcome == PENDING] == [replacing.refund.refund_id], ledger
    never = await session.get(PaymentOperation, abandoned.refund.refund_id, populate_existing=True)
    assert never is not None and (never.outcome, never.amount) == (OP_FAILED, Decimal(0))
    assert str(replacing.refund.refund_id) in (never.error or "")
    assert await answers(session, payment) == []  # the never-asked row answers nobody


async def test_an_abandoned_retry_applied_first_refuses_the_one_replacing_it(session: AsyncSession) -> None:
    """The other order: the abandoned retry's event did apply first (its refund pending at the provider):
    the replacing retry finds the return's own refund pending and is refused, never asking twice."""
    payment = await captured_payment(session)
    return_id, first, asked_at = await returns_first_refund_refused_by_provider(session, payment)
    abandoned = retry_of(payment, return_id, [first], asked_at)
    await retry_refund_for_return(session, abandoned)
    replacing = retry_of(payment, return_id, [first, abandoned.refund.refund_id], asked_at)
    await retry_refund_for_return(session, replacing)

    ledger = await refunds(session, payment)
    assert [op_id for op_id, outcome, _ in ledger if outcome == PENDING] == [abandoned.refund.refund_id], ledger
    assert (replacing.refund.refund_id, OP_FAILED, ASKED) in ledger


async def returns_first_refund_refused_by_provider(
    session: AsyncSession, payment: Payment
) -> tuple[uuid.UUID, uuid.UUID, dt.datetime]:
    """A return whose first refund the provider refused (a failed ledger row of its own, no event)."""
    return_id, refund_id, asked_at = uuid.uuid4(), uuid.uuid4(), utc_now() - dt.timedelta(minutes=1)
    request = {"reason": "r", "return_id": str(return_id), "return_amount": str(ASKED)}
    key = f"{payment.id}:refund:return:{refund_id}"
    await refund_row(session, payment, key, ASKED, request, op_id=refund_id, outcome=OP_FAILED, at=asked_at)
    return return_id, refund_id, asked_at


async def test_a_refund_by_hand_named_when_the_return_asks_settles_it_without_the_provider(
    session: AsyncSession,
) -> None:
    """Staff refunded the return's money by hand before it asked, with enough left refundable: its own refund
    went to the provider as well (a double refund). Named on receive/approve (return.received v3 /
    return.approved v2 settle_with), the refund is settled by it: a 0.00 row counting it, payment.refunded,
    nothing pending; once however often the event comes. A named refund still pending refuses it."""
    payment = await captured_payment(session)
    hand = await by_hand(session, payment, ASKED)
    await answered(session, hand, SUCCEEDED, at=utc_now() - dt.timedelta(minutes=2))
    return_id = uuid.uuid4()
    first = RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    for _ in range(2):  # a redelivery adds nothing
        await refund_for_return(session, payment.order_id, return_id, first, [hand])

    ledger = await refunds(session, payment)
    assert (first.refund_id, SUCCEEDED, Decimal("0.00")) in ledger
    assert [op for op in ledger if op[1] == PENDING] == [], ledger  # the provider is not asked
    settled = await session.get(PaymentOperation, first.refund_id, populate_existing=True)
    assert settled is not None and settled.request["settled_by"] == {str(hand): str(ASKED)}
    assert await answers(session, payment) == ["payment.refunded"]

    pending = await by_hand(session, payment, ASKED)
    other = RefundOrder(refund_id=uuid.uuid4(), amount=ASKED, currency="USD", reason="r")
    await refund_for_return(session, payment.order_id, uuid.uuid4(), other, [pending])
    refused = await session.get(PaymentOperation, other.refund_id, populate_existing=True)
    assert refused is not None and refused.outcome == OP_FAILED
    assert (refused.error or "").startswith(f"settle_with: refund {pending} still awaits"), refused.error


async def test_a_refund_by_hand_asked_again_calls_the_provider_only_if_no_one_holds_it(session: AsyncSession) -> None:
    """POST /api/payments/{id}/refund retried with its Idempotency-Key (what its 202 says to do) called the
    provider again without leasing the row (review, W): beside the worker's status query of an old refund, a
    "no such refund" could fail it while that POST was on its way, and the provider then made it (a retry
    would refund twice). Now the retry leases the row as the worker's claim does, only if it is due."""
    payment = await captured_payment(session)
    key = str(uuid.uuid4())
    payments = PaymentService(session)
    first = await payments.request_refund(payment.id, ASKED, "goodwill", key)
    assert first.call  # new: leased to this request
    again = await payments.request_refund(payment.id, ASKED, "goodwill", key)
    assert (again.id, again.call) == (first.id, False)  # held (by the first request, the worker, an operator)
    past = utc_now() - dt.timedelta(hours=1)
    await session.execute(update(PaymentOperation).where(PaymentOperation.id == first.id).values(next_attempt_at=past))
    due = await payments.request_refund(payment.id, ASKED, "goodwill", key)
    assert (due.id, due.call) == (first.id, True)
    assert not (await payments.request_refund(payment.id, ASKED, "goodwill", key)).call  # and now leased
    await answered(session, first.id, SUCCEEDED)
    await session.execute(update(PaymentOperation).where(PaymentOperation.id == first.id).values(next_attempt_at=past))
    assert not (await payments.request_refund(payment.id, ASKED, "goodwill", key)).call  # answered: nothing to call
