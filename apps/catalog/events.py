"""Events the catalog publishes (topic commerce.product, key = product id).

product.created and product.updated carry the product's full current state rather than a diff, so a
consumer (analytics, warehouse) can build its projection from any single event, and a replay or a
redelivery converges on the same state.
"""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import uuid
from decimal import Decimal

from outbox.events import Event, event

__all__ = ["ProductCreated", "ProductDeleted", "ProductUpdated"]


class _ProductState(Event, frozen=True, kw_only=True):
    # The product's published state, first in both payloads (not an event of its own).
    id: uuid.UUID
    sku: str
    name: str
    price: Decimal
    currency: str
    status: str
    category_id: uuid.UUID | None = None
    description: str | None = None


@event("product.created", version=1, aggregate="product")
class ProductCreated(_ProductState, frozen=True, kw_only=True):
    """A product was added to the catalog."""

    created_at: dt.datetime


@event("product.updated", version=1, aggregate="product")
class ProductUpdated(_ProductState, frozen=True, kw_only=True):
    """A product changed; the payload is its state after the change."""

    # Which fields this change touched, e.g. ["price"]: lets a consumer skip changes it ignores.
    changed: tuple[str, ...] = ()
    updated_at: dt.datetime


@event("product.deleted", version=1, aggregate="product")
class ProductDeleted(Event, frozen=True, kw_only=True):
    """A product was withdrawn from the catalog (a soft delete: its sku stays taken)."""

    id: uuid.UUID
    sku: str
    deleted_at: dt.datetime
