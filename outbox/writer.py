"""Add an event to the caller's transaction: the only way an event leaves a service.

There is deliberately no Kafka producer here. The row commits or rolls back with the domain rows beside
it, and Debezium publishes what committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text

from outbox.events import Event, encode_payload

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["OutboxRecord", "add_event", "new_event_id"]

# One round trip: bump the aggregate's counter (its row lock makes a concurrent writer on the same
# aggregate wait for our commit) and insert the event with the new version.
_INSERT_EVENT = text(
    """
    WITH next AS (
        INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version)
        VALUES (:aggregate_id, :aggregate_type, 1)
        ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
        RETURNING version
    )
    INSERT INTO event_store
        (id, aggregate_id, aggregate_type, event_type, event_data, event_version, schema_version)
    SELECT :id, :aggregate_id, :aggregate_type, :event_type, CAST(:event_data AS jsonb), next.version,
           :schema_version
    FROM next
    RETURNING event_version, created_at
    """
)


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """What was written: enough to answer a client or to correlate with the Kafka record."""

    event_id: uuid.UUID
    aggregate_id: uuid.UUID
    aggregate_type: str
    event_type: str
    event_version: int
    schema_version: int
    created_at: dt.datetime


def new_event_id() -> uuid.UUID:
    """Time-ordered ids (UUIDv7) keep the outbox's primary-key index append-only."""
    try:
        import uuid_utils

        return uuid.UUID(str(uuid_utils.uuid7()))
    except ImportError:  # pragma: no cover - uuid-utils comes with advanced-alchemy[uuid]
        return uuid.uuid4()


async def add_event(
    session: AsyncSession,
    aggregate_id: uuid.UUID,
    event: Event,
    *,
    event_id: uuid.UUID | None = None,
) -> OutboxRecord:
    """Write ``event`` into the outbox inside the session's current transaction (it does not commit)."""
    event_id = event_id or new_event_id()
    row = (
        await session.execute(
            _INSERT_EVENT,
            {
                "id": event_id,
                "aggregate_id": aggregate_id,
                "aggregate_type": event.aggregate_type,
                "event_type": event.event_type,
                "event_data": encode_payload(event).decode(),
                "schema_version": event.schema_version,
            },
        )
    ).one()
    # Positional, in the dataclass's field order.
    return OutboxRecord(
        event_id,
        aggregate_id,
        event.aggregate_type,
        event.event_type,
        row.event_version,
        event.schema_version,
        row.created_at,
    )
