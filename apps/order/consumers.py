"""The order-saga consumer group: checkout, warehouse and payment answers drive each order's saga.

checkout.completed creates the pending order; inventory.reserved / reservation_failed and payment.* move
its saga (apps/order/saga.py); a failed capture, void or refund only shows on the order (payment_status
and a history row). Each handler runs in the runtime's transaction with the event's inbox row, so the
saga's next request (through the order outbox) commits exactly once with the answer that caused it.
Run: ``python -m outbox.runner apps.order.consumers``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from apps.checkout.events import CheckoutCompleted
from apps.common.consumer_db import consumer_database_url
from apps.order import saga_rows
from apps.order.checkout_orders import ask_buyers_keys, create_from_checkout
from apps.order.saga import Saga
from apps.payment.events import (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
    PaymentVoidFailed,
)
from apps.warehouse.events import InventoryReservationFailed, InventoryReserved
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("apps.order.saga")
# The database holding this group's inbox and the sagas (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("order")
group = ConsumerGroup("order-saga")
# Nothing to rebuild: sagas are decisions that were published, not a projection; a replay finds each
# order past the step an old answer belongs to and changes nothing.
projection_tables: tuple[str, ...] = ()


@group.handler("checkout.completed")
async def order_from_checkout(session: AsyncSession, event: CheckoutCompleted, ctx: EventContext) -> None:
    if await create_from_checkout(session, event):
        log.info("order %s: order.created from checkout %s", event.order_id, event.checkout_id)


group.prepare("checkout.completed")(ask_buyers_keys)  # the buyers' keys, before the batch's transaction


@group.batch_handler("inventory.reserved")
async def stock_reserved(session: AsyncSession, items: Sequence[tuple[InventoryReserved, EventContext]]) -> None:
    await saga_rows.reserved(session, [event for event, _ in items], [ctx.correlation_id for _, ctx in items])


@group.handler("inventory.reservation_failed")
async def stock_refused(session: AsyncSession, event: InventoryReservationFailed, ctx: EventContext) -> None:
    await Saga(session).reservation_failed(event.order_id, event.reason)


@group.handler("payment.authorized")
async def payment_authorized(session: AsyncSession, event: PaymentAuthorized, ctx: EventContext) -> None:
    await Saga(session).authorized(event.order_id, event.payment_id)


# In the next two handlers the event type's verb (payment.declined -> declined) is the payment's new status.


@group.handler("payment.declined")
@group.handler("payment.failed")
async def payment_refused(session: AsyncSession, event: PaymentDeclined | PaymentFailed, ctx: EventContext) -> None:
    await Saga(session).refused(event.order_id, _status(ctx))


@group.handler("payment.captured")
@group.handler("payment.voided")
async def payment_settled(session: AsyncSession, event: PaymentCaptured | PaymentVoided, ctx: EventContext) -> None:
    await Saga(session).payment_moved(event.order_id, _status(ctx))


@group.handler("payment.refunded")
async def payment_refunded(session: AsyncSession, event: PaymentRefunded, ctx: EventContext) -> None:
    await Saga(session).payment_moved(event.order_id, event.status)


# The event type's verb is the order's payment_status here too (payment.capture_failed -> capture_failed).


@group.handler("payment.capture_failed")
@group.handler("payment.void_failed")
@group.handler("payment.refund_failed")
async def payment_operation_failed(
    session: AsyncSession, event: PaymentCaptureFailed | PaymentVoidFailed | PaymentRefundFailed, ctx: EventContext
) -> None:
    await Saga(session).payment_failed(event.order_id, _status(ctx), event.reason, ctx.event_id)


def _status(ctx: EventContext) -> str:
    return ctx.event_type.removeprefix("payment.")
