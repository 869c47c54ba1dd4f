"""The checkout service's tables."""

from __future__ import annotations

from advanced_alchemy.base import AdvancedDeclarativeBase
from sqlalchemy.ext.asyncio import AsyncAttrs

from outbox.models import AggregateVersionMixin, OutboxEventMixin


class Base(AdvancedDeclarativeBase, AsyncAttrs):
    """Every checkout table lives on this service's own metadata (bind key "checkout")."""

    __abstract__ = True
    __bind_key__ = "checkout"


class EventStore(OutboxEventMixin, Base):
    """The checkout outbox (the seed's event_store)."""


class AggregateVersion(AggregateVersionMixin, Base):
    """Per-aggregate event_version counter."""
