"""The order service's tables."""

from __future__ import annotations

from advanced_alchemy.base import AdvancedDeclarativeBase
from sqlalchemy.ext.asyncio import AsyncAttrs

from outbox.models import AggregateVersionMixin, OutboxEventMixin


class Base(AdvancedDeclarativeBase, AsyncAttrs):
    """Every order table lives on this service's own metadata (bind key "order")."""

    __abstract__ = True
    __bind_key__ = "order"


class EventStore(OutboxEventMixin, Base):
    """The order outbox (the seed's event_store)."""


class AggregateVersion(AggregateVersionMixin, Base):
    """Per-aggregate event_version counter."""
