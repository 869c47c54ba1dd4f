"""Table mixins for the outbox (the seed's event_store), per-aggregate versions and the consumer inbox.

A service maps them onto its own declarative base, so each service database gets its own tables:

    class EventStore(OutboxEventMixin, Base): ...
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, DateTime, Integer, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

OUTBOX_TABLE = "event_store"
VERSION_TABLE = "outbox_aggregate_version"
HEARTBEAT_TABLE = "debezium_heartbeat"
INBOX_TABLE = "inbox"


class OutboxEventMixin:
    """One event, written in the same transaction as the domain rows it describes."""

    __tablename__ = OUTBOX_TABLE

    id: Mapped[UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    aggregate_id: Mapped[UUID] = mapped_column(PG_UUID(as_uuid=True))
    aggregate_type: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    event_data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    event_version: Mapped[int] = mapped_column(Integer)
    schema_version: Mapped[int] = mapped_column(SmallInteger, default=1)
    min_reader_version: Mapped[int] = mapped_column(SmallInteger, default=1)
    correlation_id: Mapped[UUID | None] = mapped_column(PG_UUID(as_uuid=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AggregateVersionMixin:
    """The last event_version handed out per aggregate; its row lock serialises concurrent writers."""

    __tablename__ = VERSION_TABLE

    aggregate_id: Mapped[UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    aggregate_type: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)


class InboxMixin:
    """Ids of events a consumer group has applied (or dead-lettered) in this database."""

    __tablename__ = INBOX_TABLE

    consumer_group: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    aggregate_id: Mapped[UUID | None] = mapped_column(PG_UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(100))
    event_version: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    topic: Mapped[str] = mapped_column(String(255))
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    processed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
