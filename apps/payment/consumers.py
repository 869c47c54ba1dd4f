"""The payment consumer group: the order saga's requests (order.payment_*) become pending ledger operations.

Each handler runs inside the runtime's transaction with the event's inbox row, and only WRITES: the
payment row and a pending operation whose idempotency key is derived from the request (order and
attempt for an authorization, payment id for a capture or a compensation), so a redelivered or repeated
request is the same operation. The provider is called afterwards by the payment worker
(apps/payment/worker.py), never while a Kafka partition waits on it.

A request that breaks the contract (a negative amount, an unknown currency shape, no token) is rejected
to the group's dead-letter topic; the saga's deadline then compensates the order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.common.errors import FieldProblem
from apps.common.topology import BY_NAME
from apps.common.topology import database_url as topology_database_url
from apps.payment.events import OrderPaymentCancelRequested, OrderPaymentCaptureRequested, OrderPaymentRequested
from apps.payment.provider import provider_name
from apps.payment.returns import register as register_return_refunds
from apps.payment.rules import check_authorization
from apps.payment.services import AuthorizationRequest, PaymentService
from outbox.consumer import ConsumerGroup, EventContext
from outbox.errors import RejectedEvent

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

service = BY_NAME["payment"]


def database_url() -> str:
    """The database that holds this group's inbox and the payments (read by outbox.runner and replay)."""
    return topology_database_url(service)


group = ConsumerGroup("payment")
register_return_refunds(group)  # return.received / return.approved: refunds (apps/payment/returns.py)
# Nothing to rebuild: payments are decisions with money behind them, not a projection; a replay finds
# every request's operation by its key and changes nothing.
projection_tables: tuple[str, ...] = ()


def authorization_key(event: OrderPaymentRequested) -> str:
    """One payment per order and attempt, whoever asks and however often."""
    return f"order:{event.order_id}:authorize:{event.attempt}"


@group.handler("order.payment_requested")
async def authorize(session: AsyncSession, event: OrderPaymentRequested, ctx: EventContext) -> None:
    try:
        check_authorization(event.amount, event.currency, event.payment_method.token, event.attempt)
    except FieldProblem as exc:
        raise RejectedEvent(f"order.payment_requested {ctx.event_id}: {exc}") from exc
    request = AuthorizationRequest(
        order_id=event.order_id,
        amount=event.amount,
        currency=event.currency,
        method_type=event.payment_method.type[:30],
        token=event.payment_method.token,
        key=authorization_key(event),
        provider=provider_name(),
    )
    await PaymentService(session).request_authorization(request)


@group.handler("order.payment_capture_requested")
async def capture(session: AsyncSession, event: OrderPaymentCaptureRequested, ctx: EventContext) -> None:
    await PaymentService(session).request_capture(event.order_id, event.amount)


@group.handler("order.payment_cancel_requested")
async def cancel(session: AsyncSession, event: OrderPaymentCancelRequested, ctx: EventContext) -> None:
    await PaymentService(session).request_cancel(event.order_id, event.reason)
