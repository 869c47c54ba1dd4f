"""What every service's ``models.py`` starts from: a declarative base on the service's own metadata, with the
outbox tables already mapped onto it, and the column helpers the tables share.

A service's ``models.py`` opens with one class::

    class Base(ServiceBase, bind_key="customer", inbox=True):
        \"\"\"Every customer table lives on this service's own metadata.\"\"\"

which gives ``Base`` (abstract, bind key "customer") and maps ``event_store`` (the outbox),
``outbox_aggregate_version`` and, for a service that consumes events, ``inbox`` onto its metadata
(``Base.outbox`` names the three classes). The tables themselves are created by the service's migrations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, NamedTuple

from advanced_alchemy.base import AdvancedDeclarativeBase
from sqlalchemy import DateTime, func
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import Mapped, mapped_column

from outbox.models import AggregateVersionMixin, InboxMixin, OutboxEventMixin

__all__ = ["OutboxTables", "ServiceBase", "timestamp", "utc_now"]


class OutboxTables(NamedTuple):
    """The outbox library's tables as mapped onto one service's base."""

    event_store: type[Any]
    aggregate_version: type[Any]
    inbox: type[Any] | None


class ServiceBase(AdvancedDeclarativeBase, AsyncAttrs):
    """Base of each service's ``Base``: name the bind key (and ``inbox=True`` where the service consumes)."""

    __abstract__ = True
    outbox: ClassVar[OutboxTables]

    def __init_subclass__(cls, *, bind_key: str | None = None, inbox: bool = False, **kwargs: Any) -> None:
        if bind_key is None:  # a table of the service
            super().__init_subclass__(**kwargs)
            return
        # The service's own abstract base: set before the declarative machinery looks at the class.
        cls.__abstract__ = True
        cls.__bind_key__ = bind_key
        super().__init_subclass__(**kwargs)
        cls.outbox = OutboxTables(
            _table(cls, "EventStore", OutboxEventMixin, "The outbox (the seed's event_store)."),
            _table(cls, "AggregateVersion", AggregateVersionMixin, "Per-aggregate event_version counter."),
            _table(cls, "Inbox", InboxMixin, "Events this database's consumer groups applied.") if inbox else None,
        )


def _table(base: type[ServiceBase], name: str, mixin: type, doc: str) -> type[Any]:
    # The service's models module as __module__: class names stay unique per service in the shared registry.
    return type(name, (mixin, base), {"__module__": base.__module__, "__qualname__": name, "__doc__": doc})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp() -> Mapped[dt.datetime]:
    """A created_at/updated_at column: set in Python (so the INSERT carries it and nothing is expired after
    the flush) and defaulted by the database for rows written elsewhere."""
    return mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())
