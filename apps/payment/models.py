"""The payment service's tables."""

from __future__ import annotations

from advanced_alchemy.base import AdvancedDeclarativeBase
from sqlalchemy.ext.asyncio import AsyncAttrs

from outbox.models import AggregateVersionMixin, OutboxEventMixin


class Base(AdvancedDeclarativeBase, AsyncAttrs):
    """Every payment table lives on this service's own metadata (bind key "payment")."""

    __abstract__ = True
    __bind_key__ = "payment"


class EventStore(OutboxEventMixin, Base):
    """The payment outbox (the seed's event_store)."""


class AggregateVersion(AggregateVersionMixin, Base):
    """Per-aggregate event_version counter."""
