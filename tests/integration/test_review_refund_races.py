"""Review (session 28, W) of 0661e39: a refund by hand retried with its Idempotency-Key (what the 202 tells
the caller to do) while the worker asks the provider what became of it.

The API's retry path (POST /api/payments/{id}/refund, in-process here with the test's provider) sent the
refund to the provider again without leasing the row, and the worker, for a refund asked longer ago than
PAYMENT_REFUND_STATUS_AFTER_S, asks GET /v1/refunds for the same key. A "no such refund" answered while the
API's POST is on its way fails the refund (refund_unknown_to_provider: "a retry is safe") although the
provider then makes it: a second refund by hand, or a return's retry, refunds the money twice. Fixed in
8aa56f1: the retry leases the row (only if no one holds it) before calling, and asks about an old refund.

On the payment database with rows of its own (a payment without a real authorization, a refund row held
from the stack's worker by a far due time until the retry's own transaction) and a provider in-process whose
POST the test lets land after the status query. Events are not written (the orders are made up): only the
ledger is checked."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.models import utc_now
from apps.common.topology import BY_NAME, database_url
from apps.payment import operations
from apps.payment.app import create_app
from apps.payment.models import Payment, PaymentOperation
from apps.payment.operations import execute
from apps.payment.provider import NO_RECORD, ProviderResult
from apps.payment.rules import BY_HAND, CAPTURED, OP_FAILED, PENDING, REFUND, SUCCEEDED
from apps.payment.services import PaymentService
from tests.support.http import authorized

pytestmark = pytest.mark.usefixtures("stack")

AMOUNT = Decimal("30.00")


class SlowProvider:
    """A provider whose refund POST lands only when the test says so; asked before, it has no such refund."""

    name = "sandbox"

    def __init__(self) -> None:
        self.land = asyncio.Event()
        self.posted = asyncio.Event()
        self.made: set[str] = set()

    async def refund(self, *, key: str, authorization: str, amount_minor: int) -> ProviderResult:
        self.posted.set()
        await self.land.wait()
        self.made.add(key)
        return ProviderResult(SUCCEEDED, f"re_{key[-8:]}")

    async def refund_status(self, *, key: str) -> ProviderResult:
        if key in self.made:
            return ProviderResult(SUCCEEDED, f"re_{key[-8:]}")
        return ProviderResult(OP_FAILED, None, NO_RECORD, {"error": {"code": "resource_missing"}})

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the test's provider was asked {name}")


@pytest.fixture
async def sessions() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=2)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def old_refund_by_hand(
    sessions: async_sessionmaker[AsyncSession], client_key: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A captured payment and its refund by hand asked an hour ago, still unanswered: (payment, refund)."""
    now = utc_now()
    payment_id, op_id = uuid.uuid4(), uuid.uuid4()
    async with sessions() as session:
        session.add(
            Payment(
                id=payment_id,
                order_id=uuid.uuid4(),
                amount=Decimal("100.00"),
                currency="USD",
                status=CAPTURED,
                provider="sandbox",
                provider_reference=f"review-auth-{payment_id}",
                payment_method_type="card",
                idempotency_key=f"test-review:{payment_id}",
                captured_amount=Decimal("100.00"),
                refunded_amount=Decimal(0),
                created_at=now - dt.timedelta(hours=2),
                updated_at=now - dt.timedelta(hours=2),
            )
        )
        await session.flush()
        session.add(
            PaymentOperation(
                id=op_id,
                payment_id=payment_id,
                kind=REFUND,
                idempotency_key=f"{payment_id}:refund:{client_key}",
                amount=AMOUNT,
                outcome=PENDING,
                reason="by hand",
                request={BY_HAND: str(AMOUNT), "reason": "by hand"},
                attempts=40,
                # Held from the stack's worker for the test; in production it is due after its backoff.
                next_attempt_at=now + dt.timedelta(hours=1),
                created_at=now - dt.timedelta(hours=1),
            )
        )
        await session.commit()
    return payment_id, op_id


async def test_a_retry_by_hand_racing_the_workers_status_query_never_fails_a_refund_the_provider_makes(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_event(*_: object, **__: object) -> None:
        return None

    monkeypatch.setattr(operations, "add_event", no_event)
    client_key = f"review-{uuid.uuid4()}"
    payment_id, op_id = await old_refund_by_hand(sessions, client_key)
    provider = SlowProvider()
    body = {"amount": str(AMOUNT), "reason": "by hand"}
    try:
        async with authorized(AsyncTestClient(app=create_app())) as client:
            client.app.state.payment_provider = provider
            original = PaymentService.request_refund

            async def due_then_asked(self: PaymentService, *args: Any, **kwargs: Any) -> Any:
                """Due now, as after its backoff, in the retry's own transaction: the stack's worker (FOR UPDATE
                SKIP LOCKED) cannot claim it before the request has decided."""
                await self.session.execute(
                    update(PaymentOperation).where(PaymentOperation.id == op_id).values(next_attempt_at=func.now())
                )
                return await original(self, *args, **kwargs)

            monkeypatch.setattr(PaymentService, "request_refund", due_then_asked)
            api = asyncio.ensure_future(
                client.post(f"/api/payments/{payment_id}/refund", json=body, headers={"Idempotency-Key": client_key})
            )
            called = asyncio.ensure_future(provider.posted.wait())
            await asyncio.wait([api, called], timeout=10, return_when=asyncio.FIRST_COMPLETED)
            # The worker's round meanwhile: claim_due takes the row if it is due, then executes it.
            async with sessions() as session:
                due = await session.scalar(
                    select(PaymentOperation.id).where(
                        PaymentOperation.id == op_id,
                        PaymentOperation.outcome == PENDING,
                        PaymentOperation.next_attempt_at <= func.now(),
                    )
                )
            if due is not None:
                async with sessions() as session:
                    await execute(session, provider, op_id, status_after=dt.timedelta(seconds=900))
            provider.land.set()  # a POST on its way lands: the provider makes the refund
            answer = await asyncio.wait_for(api, 10)
            called.cancel()
        async with sessions() as session:
            op = await session.scalar(select(PaymentOperation).where(PaymentOperation.id == op_id))
        assert op is not None
        made = op.idempotency_key in provider.made
        assert not (made and op.outcome == OP_FAILED), (
            f"the provider made refund {op_id} but the ledger says {op.outcome} ({op.error}); the retry "
            f"answered {answer.status_code}; the worker found it due: {due is not None}"
        )
    finally:
        async with sessions() as session:
            await session.execute(delete(PaymentOperation).where(PaymentOperation.payment_id == payment_id))
            await session.execute(delete(Payment).where(Payment.id == payment_id))
            await session.commit()
