"""The customer_stats projection's pure fold: how order events change a customer's numbers in one currency. No I/O.

consumers.py adds the folded deltas to the table in one upsert per batch: a row per (customer, currency), so an
order's amount is only ever added to amounts in its own currency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from apps.order.events import OrderCancelledV1, OrderConfirmed, OrderCreated

OrderEvent = OrderCreated | OrderConfirmed | OrderCancelledV1


@dataclass
class StatsDelta:
    """What a batch of events adds to one customer's stats in one currency."""

    orders: int = 0
    cancelled: int = 0
    spent: Decimal = field(default_factory=lambda: Decimal("0.00"))
    last_order_at: dt.datetime | None = None


def not_a_purchase(ev: OrderEvent) -> bool:
    """An order.created of an order not confirmed yet, or the cancellation of one never confirmed: the fold
    changes nothing for either (the consumer skips them before its inbox, ConsumerGroup's ``skip``)."""
    return (isinstance(ev, OrderCreated) and ev.status != "confirmed") or (
        isinstance(ev, OrderCancelledV1) and not ev.had_been_confirmed()
    )


def fold(events: Iterable[OrderEvent]) -> dict[tuple[str, str], StatsDelta]:
    """Sum events per customer and currency (the order's; its cancellation carries the same). An order is a
    purchase once confirmed: order.confirmed counts it (and order.created only for orders born confirmed,
    before the saga). A cancelled purchase stays counted as an order but is no longer spend; an order
    cancelled before confirmation was never counted and is skipped (``was_confirmed`` false)."""
    deltas: dict[tuple[str, str], StatsDelta] = {}
    for ev in events:
        if not_a_purchase(ev):
            continue
        delta = deltas.setdefault((ev.customer_id, ev.currency), StatsDelta())
        if isinstance(ev, OrderCancelledV1):
            delta.cancelled += 1
            delta.spent -= ev.total_amount
            continue
        delta.orders += 1
        delta.spent += ev.total_amount
        if delta.last_order_at is None or ev.created_at > delta.last_order_at:
            delta.last_order_at = ev.created_at
    return deltas
