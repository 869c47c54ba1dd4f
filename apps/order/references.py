"""The order-references consumer group: customer.* and product.* events -> the order service's read models
(apps/order/known.py), so placing an order asks the customer and catalog services only on a miss.

A product event applies when its version is newer than the row's (a redelivered or older one changes
nothing); its own time (created_at, updated_at, deleted_at) becomes the row's ``confirmed_at``.
Run: ``python -m apps.order.references --port 8304`` (the stack does: apps.common.topology.PROCESSES).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import text

from apps.catalog.events import ProductCreated, ProductDeleted, ProductUpdated
from apps.common.consumer_db import consumer_database_url
from apps.customer.events import CustomerRegistered, CustomerUpdated
from apps.order.erasure import register as register_erasure
from outbox.consumer import ConsumerGroup, EventContext
from outbox.redaction import configure_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

database_url = consumer_database_url("order")
group = ConsumerGroup("order-references")
register_erasure(group)  # customer.erased: known customer dropped, their orders anonymised (apps/order/erasure.py)
# What `python -m outbox.replay order-references --rebuild` would empty: both are rebuilt from the events
# (and refilled by the APIs on a miss meanwhile).
projection_tables = ("order_known_customers", "order_known_products")
ACTIVE = "active"

_PRODUCT = text(
    """
    INSERT INTO order_known_products AS k (product_id, sku, name, price, currency, sellable, version, confirmed_at)
    VALUES (:id, :sku, :name, :price, :currency, :sellable, :version, :at)
    ON CONFLICT (product_id) DO UPDATE SET sku = excluded.sku, name = excluded.name, price = excluded.price,
        currency = excluded.currency, sellable = excluded.sellable, version = excluded.version,
        confirmed_at = excluded.confirmed_at
    WHERE k.version < excluded.version
    """
)
_CUSTOMER = text(
    "INSERT INTO order_known_customers (customer_id) VALUES (:customer_id) ON CONFLICT (customer_id) DO NOTHING"
)


async def _product(
    session: AsyncSession, event: ProductCreated | ProductUpdated, ctx: EventContext, at: dt.datetime
) -> None:
    values = {"id": event.id, "sku": event.sku, "name": event.name, "price": event.price, "currency": event.currency}
    sellable = event.status == ACTIVE
    await session.execute(_PRODUCT, {**values, "sellable": sellable, "version": ctx.event_version or 0, "at": at})


@group.handler("product.created")
async def product_created(session: AsyncSession, event: ProductCreated, ctx: EventContext) -> None:
    await _product(session, event, ctx, event.created_at)


@group.handler("product.updated")
async def product_updated(session: AsyncSession, event: ProductUpdated, ctx: EventContext) -> None:
    await _product(session, event, ctx, event.updated_at)


@group.handler("product.deleted")
async def product_deleted(session: AsyncSession, event: ProductDeleted, ctx: EventContext) -> None:
    values = {"id": event.id, "sku": event.sku, "name": None, "price": None, "currency": None, "sellable": False}
    await session.execute(_PRODUCT, {**values, "version": ctx.event_version or 0, "at": event.deleted_at})


@group.handler("customer.registered")
@group.handler("customer.updated")
async def customer_known(session: AsyncSession, event: CustomerRegistered | CustomerUpdated, ctx: EventContext) -> None:
    await session.execute(_CUSTOMER, {"customer_id": str(event.id)})


def main() -> None:
    """Run this group as the stack's process `order-references` (its /health, /ready, /metrics on --port)."""
    from outbox.runner import batch_size, serve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="/health, /ready and /metrics")
    parser.add_argument("--batch-size", type=int, default=batch_size())
    args = parser.parse_args()
    configure_logging()  # plain text, every line through redact (issue 14)
    asyncio.run(serve("apps.order.references", batch_size=args.batch_size, metrics_port=args.port))


if __name__ == "__main__":
    main()
