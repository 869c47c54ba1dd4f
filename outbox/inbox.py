"""The consumer inbox: record event ids first, so a redelivered or replayed event is skipped."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import EventContext

APPLIED = "applied"
DEAD_LETTERED = "dead_lettered"

# One statement for the whole batch. A plain redelivery of a dead-lettered event stays dead-lettered
# (it would only fail again); a redrive (a deliberate resend from the dead-letter topic) may apply it.
_CLAIM_SQL = """
    INSERT INTO inbox AS i (consumer_group, event_id, aggregate_id, event_type, event_version, outcome,
                            topic, kafka_partition, kafka_offset)
    SELECT :group, t.event_id, t.aggregate_id, t.event_type, t.event_version, 'applied',
           t.topic, t.kafka_partition, t.kafka_offset
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:aggregate_ids AS uuid[]), CAST(:event_types AS text[]),
                CAST(:event_versions AS int[]), CAST(:topics AS text[]), CAST(:partitions AS int[]),
                CAST(:offsets AS bigint[]))
         AS t(event_id, aggregate_id, event_type, event_version, topic, kafka_partition, kafka_offset)
    {on_conflict}
    RETURNING event_id
"""
_CLAIM = text(_CLAIM_SQL.format(on_conflict="ON CONFLICT (consumer_group, event_id) DO NOTHING"))
_CLAIM_REDRIVEN = text(
    _CLAIM_SQL.format(
        on_conflict="""ON CONFLICT (consumer_group, event_id) DO UPDATE
        SET outcome = 'applied', processed_at = now(), topic = excluded.topic,
            kafka_partition = excluded.kafka_partition, kafka_offset = excluded.kafka_offset
        WHERE i.outcome = 'dead_lettered'"""
    )
)

_LAST_VERSIONS = text(
    """
    SELECT aggregate_id, max(event_version) AS version FROM inbox
    WHERE consumer_group = :group AND aggregate_id = ANY(CAST(:aggregate_ids AS uuid[])) AND outcome = 'applied'
    GROUP BY aggregate_id
    """
)

_MARK_DEAD = text(
    "UPDATE inbox SET outcome = 'dead_lettered' WHERE consumer_group = :group AND event_id = ANY(CAST(:ids AS uuid[]))"
)


async def last_versions(session: AsyncSession, group: str, aggregate_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not aggregate_ids:
        return {}
    rows = await session.execute(_LAST_VERSIONS, {"group": group, "aggregate_ids": list(aggregate_ids)})
    return {row.aggregate_id: row.version for row in rows}


async def claim(
    session: AsyncSession, group: str, contexts: Sequence[EventContext], *, redriven: bool = False
) -> set[uuid.UUID]:
    """Insert the batch's event ids; return the ones this group must apply now."""
    if not contexts:
        return set()
    rows = await session.execute(
        _CLAIM_REDRIVEN if redriven else _CLAIM,
        {
            "group": group,
            "event_ids": [c.event_id for c in contexts],
            "aggregate_ids": [c.aggregate_id for c in contexts],
            "event_types": [c.event_type for c in contexts],
            "event_versions": [c.event_version for c in contexts],
            "topics": [c.topic for c in contexts],
            "partitions": [c.partition for c in contexts],
            "offsets": [c.offset for c in contexts],
        },
    )
    return {row.event_id for row in rows}


async def mark_dead_lettered(session: AsyncSession, group: str, event_ids: Sequence[uuid.UUID]) -> None:
    if event_ids:
        await session.execute(_MARK_DEAD, {"group": group, "ids": list(event_ids)})


async def clear(session: AsyncSession, group: str) -> int:
    """Forget what a group applied (a rebuild replays everything into an emptied projection)."""
    result = await session.execute(text("DELETE FROM inbox WHERE consumer_group = :group"), {"group": group})
    return int(getattr(result, "rowcount", 0) or 0)
