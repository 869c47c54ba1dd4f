"""Add an event to the caller's transaction: the only way an event leaves a service.

There is deliberately no Kafka producer here. The row commits or rolls back with the domain rows beside
it, and Debezium publishes what committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from outbox.correlation import correlation_id
from outbox.events import Event, encode_payload

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["OutboxRecord", "add_event", "events_ctes", "events_parameters", "new_event_id"]

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
        (id, aggregate_id, aggregate_type, event_type, event_data, event_version, schema_version,
         min_reader_version, correlation_id)
    SELECT :id, :aggregate_id, :aggregate_type, :event_type, CAST(:event_data AS jsonb), next.version,
           :schema_version, :min_reader_version, CAST(:correlation_id AS uuid)
    FROM next
    RETURNING event_version, created_at
    """
)


def events_ctes(when: str = "TRUE") -> str:
    """Two CTEs for the WITH list of a caller's set-based statement: the events of ``events_parameters``,
    each with its aggregate's next version, as add_event writes one. At most one event per aggregate in a
    statement (ON CONFLICT touches a row once per statement). ``when``: an SQL condition (e.g. a CTE's
    verdict) without which nothing is written. PostgreSQL runs data-modifying CTEs whether or not the
    statement reads them."""
    return f"""
    outbox_versions AS (
        INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version)
        SELECT a.aggregate_id, a.aggregate_type, 1
        FROM unnest(CAST(:event_aggregate_ids AS uuid[]), CAST(:event_aggregate_types AS text[]))
             AS a(aggregate_id, aggregate_type)
        WHERE {when}
        ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
        RETURNING v.aggregate_id, v.version
    ), outbox_events AS (
        INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version,
                                 schema_version, min_reader_version, correlation_id)
        SELECT x.id, x.aggregate_id, x.aggregate_type, x.event_type, CAST(x.data AS jsonb), v.version,
               x.schema_version, x.min_reader_version, x.correlation_id
        FROM unnest(CAST(:event_ids AS uuid[]), CAST(:event_aggregate_ids AS uuid[]),
                    CAST(:event_aggregate_types AS text[]), CAST(:event_types AS text[]),
                    CAST(:event_data AS text[]), CAST(:event_schema_versions AS int[]),
                    CAST(:event_min_reader_versions AS int[]), CAST(:event_correlation_ids AS uuid[]))
             WITH ORDINALITY AS x(id, aggregate_id, aggregate_type, event_type, data, schema_version,
                                  min_reader_version, correlation_id, n)
        JOIN outbox_versions AS v ON v.aggregate_id = x.aggregate_id
        ORDER BY x.n
    )"""


def events_parameters(
    events: Sequence[tuple[uuid.UUID, Event]], correlation_ids: Sequence[str | None] | None = None
) -> dict[str, list[Any]]:
    """The parameters of ``events_ctes``: each (aggregate id, event), in the order they are written.
    ``correlation_ids``: each event's (outbox/correlation.py), for a batch that writes events caused by
    different consumed events; without them every event gets the current one."""
    if correlation_ids is None:
        correlation_ids = [correlation_id.get()] * len(events)
    elif len(correlation_ids) != len(events):
        raise ValueError(f"{len(correlation_ids)} correlation ids for {len(events)} events")
    return {
        "event_ids": [new_event_id() for _ in events],
        "event_aggregate_ids": [aggregate_id for aggregate_id, _ in events],
        "event_aggregate_types": [event.aggregate_type for _, event in events],
        "event_types": [event.event_type for _, event in events],
        "event_data": [encode_payload(event).decode() for _, event in events],
        "event_schema_versions": [event.schema_version for _, event in events],
        "event_min_reader_versions": [event.min_reader_version for _, event in events],
        "event_correlation_ids": list(correlation_ids),
    }


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
                # The oldest version a reader must know (its header tells an older consumer to dead-letter it).
                "min_reader_version": event.min_reader_version,
                # The request's (or the consumed event's) id, so every hop of one order shares it.
                "correlation_id": correlation_id.get(),
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
