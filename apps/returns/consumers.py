"""The returns consumer group: the order projection (order_snapshots) from the order's events, and the
return's progress from the payment service's and the warehouse's answers.

Of an order's events only those from its first status after confirmation on (processing, shipped,
delivered: order.status_changed) and its cancellation are projected. order.created and order.confirmed
are not handled (their records are passed over by their event_type header, undecoded): a snapshot that
says pending or confirmed is never enough for a return (orders.prepare_order asks the order API whenever
the projection does not say delivered), so the row, inbox claim and transaction they cost for every order
(nearly all of which are never returned) bought nothing.

Handlers run inside the runtime's transaction with the event's inbox row, so each event is applied once;
a payment answer about a refund that is not a return's (an order's cancellation) changes nothing, except
that a refund by hand that failed lets the returns it held back ask again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from apps.common.consumer_db import consumer_database_url
from apps.order.events import OrderCancelled, OrderStatusChanged
from apps.payment.events import PaymentRefunded, PaymentRefundFailed
from apps.returns.erasure import register as register_erasure
from apps.returns.orders import OrderFact, project_orders
from apps.returns.progress import refund_failed, refunded, restocked, retry_unblocked
from apps.warehouse.events import InventoryRestocked
from outbox.consumer import ConsumerGroup, EventContext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# The database holding this group's inbox and projection (outbox.runner and outbox.replay read it).
database_url = consumer_database_url("returns")
# Off every latency-measured path: the broker holds its fetches up to 200 ms (ConsumerGroup.fetch_wait_ms;
# 50 and 200 orders/s: its consumer + backend 0.60-0.78 -> 0.38 and 0.22-0.26 -> 0.13 ms per order).
group = ConsumerGroup("returns", fetch_wait_ms=200)
register_erasure(group)  # customer.erased: the customer's returns lose their free text (apps/returns/erasure.py)
# A rebuild empties nothing: order_snapshots also holds the lines read from the order API (no event
# carries them), and a replay brings every status forward again without undoing them.
projection_tables: tuple[str, ...] = ()


# Order events in batches: each becomes a fact, folded per order into one upsert (see apps/returns/orders.py).
@group.batch_handler("order.status_changed")
async def order_status_changed(session: AsyncSession, items: Sequence[tuple[OrderStatusChanged, EventContext]]) -> None:
    facts = [OrderFact(e.order_id, e.status_to, e.customer_id, changed_at=e.changed_at) for e, _ in items]
    await project_orders(session, facts)


@group.batch_handler("order.cancelled")
async def order_cancelled(session: AsyncSession, items: Sequence[tuple[OrderCancelled, EventContext]]) -> None:
    await project_orders(session, [OrderFact(e.order_id, "cancelled", e.customer_id, e.currency) for e, _ in items])


@group.handler("payment.refunded")
async def payment_refunded(session: AsyncSession, event: PaymentRefunded, ctx: EventContext) -> None:
    await refunded(session, event.refund_id, event.amount, event.refunded_at)


@group.handler("payment.refund_failed")
async def payment_refund_failed(session: AsyncSession, event: PaymentRefundFailed, ctx: EventContext) -> None:
    if not await refund_failed(session, event.refund_id, event.reason, event.failed_at):
        # A refund by hand failed: the returns it held back ask again (progress.retry_unblocked).
        await retry_unblocked(session, event.order_id, event.refund_id, event.reason)


@group.handler("inventory.restocked")
async def inventory_restocked(session: AsyncSession, event: InventoryRestocked, ctx: EventContext) -> None:
    items = [(item.return_item_id, item.warehouse_id) for item in event.items]
    await restocked(session, event.return_id, items, event.restocked_at)
