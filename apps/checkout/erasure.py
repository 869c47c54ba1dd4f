"""customer.erased in the checkout service (group checkout, apps/checkout/consumers.py).

Checkout sessions lose the addresses (given or saved ones' ids) and the card's provider token; an
open session is cancelled, so nobody completes it for an erased customer; the customer's active cart is
abandoned (the retention job deletes abandoned carts 30 days later). Amounts, lines and statuses stay.
The customer's cached cart views in Redis are invalidated (``checkout:cart:{cart_id}``, found from the
carts' rows: the keys are by cart id). They hold no name, email or address, only lines and the customer
id, and expire within the view TTL if Redis cannot be told now.
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.checkout.cache import CartCache
from apps.checkout.settings import settings
from apps.common.erasure import execute_for_customer, register_erasure
from apps.common.redis_store import RedisStore, create_redis_client

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup

__all__ = ["erase_customer", "register"]

_PERSONAL: Final = (
    "shipping_address IS NOT NULL OR billing_address IS NOT NULL OR customer_shipping_address_id IS NOT NULL "
    "OR customer_billing_address_id IS NOT NULL OR payment_method_id IS NOT NULL"
)
# Each statement leaves nothing for a second run to change (idempotent under replay).
STATEMENTS: Final = (
    text(
        "UPDATE checkout_sessions SET status = 'cancelled', updated_at = now() "
        "WHERE customer_id = :customer_id AND status = 'initialized'"
    ),
    text(
        "UPDATE checkout_sessions SET shipping_address = NULL, billing_address = NULL, "
        "customer_shipping_address_id = NULL, customer_billing_address_id = NULL, payment_method_id = NULL, "
        f"updated_at = now() WHERE customer_id = :customer_id AND ({_PERSONAL})"
    ),
    text(
        "UPDATE cart_sessions SET status = 'abandoned', metadata = '{}'::jsonb, updated_at = now() "
        "WHERE customer_id = :customer_id AND status = 'active'"
    ),
)
_CARTS: Final = text("SELECT id FROM cart_sessions WHERE customer_id = :customer_id")


@functools.cache
def _cart_cache() -> CartCache:
    """The consumer process's own Redis client, opened on first use (never at import)."""
    config = settings()
    return CartCache(RedisStore(create_redis_client()), view_ttl=config.cart_view_ttl, guest_ttl=config.cart_idle)


async def erase_customer(session: AsyncSession, customer_id: str) -> None:
    await execute_for_customer(session, STATEMENTS, customer_id)
    carts: list[uuid.UUID] = list(await session.scalars(_CARTS, {"customer_id": customer_id}))
    cache = _cart_cache()
    for cart_id in carts:
        await cache.invalidate(cart_id)


def register(group: ConsumerGroup) -> None:
    register_erasure(group, erase_customer)
