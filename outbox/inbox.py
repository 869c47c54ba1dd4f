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
_INSERT_SQL = """
    INSERT INTO inbox AS i (consumer_group, event_id, aggregate_id, event_type, event_version, outcome,
                            topic, kafka_partition, kafka_offset)
    SELECT :group, t.event_id, t.aggregate_id, t.event_type, t.event_version, 'applied',
           t.topic, t.kafka_partition, t.kafka_offset
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:aggregate_ids_claimed AS uuid[]),
                CAST(:event_types AS text[]), CAST(:event_versions AS int[]), CAST(:topics AS text[]),
                CAST(:partitions AS int[]), CAST(:offsets AS bigint[]))
         AS t(event_id, aggregate_id, event_type, event_version, topic, kafka_partition, kafka_offset)
    {on_conflict}
    RETURNING event_id
"""
_LAST_VERSIONS_SQL = """
    SELECT aggregate_id, max(event_version) AS version FROM inbox
    WHERE consumer_group = :group AND aggregate_id = ANY(CAST(:aggregate_ids AS uuid[])) AND outcome = 'applied'
    GROUP BY aggregate_id
"""
# The claim and the versions this group applied before for the aggregates with history, in one round trip:
# every part of a statement sees the snapshot taken before its inserts, so the versions found are the ones
# applied before this batch. Rows with an event_id are claims, rows with an aggregate_id versions.
_CLAIM = text(
    f"""
    WITH claimed AS ({_INSERT_SQL.format(on_conflict="ON CONFLICT (consumer_group, event_id) DO NOTHING")}),
    previous AS ({_LAST_VERSIONS_SQL})
    SELECT event_id, CAST(NULL AS uuid) AS aggregate_id, CAST(NULL AS int) AS version FROM claimed
    UNION ALL
    SELECT CAST(NULL AS uuid), aggregate_id, version FROM previous
    """
)
_CLAIM_REDRIVEN = text(
    _INSERT_SQL.format(
        on_conflict="""ON CONFLICT (consumer_group, event_id) DO UPDATE
        SET outcome = 'applied', processed_at = now(), topic = excluded.topic,
            kafka_partition = excluded.kafka_partition, kafka_offset = excluded.kafka_offset
        WHERE i.outcome = 'dead_lettered'"""
    )
)
_LAST_VERSIONS = text(_LAST_VERSIONS_SQL)

_MARK_DEAD = text(
    "UPDATE inbox SET outcome = 'dead_lettered' WHERE consumer_group = :group AND event_id = ANY(CAST(:ids AS uuid[]))"
)


async def last_versions(session: AsyncSession, group: str, aggregate_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not aggregate_ids:
        return {}
    rows = await session.execute(_LAST_VERSIONS, {"group": group, "aggregate_ids": list(aggregate_ids)})
    return {row.aggregate_id: row.version for row in rows}


async def claim(
    session: AsyncSession, group: str, contexts: Sequence[EventContext], *, history: set[uuid.UUID] | None = None
) -> tuple[set[uuid.UUID], dict[uuid.UUID, int]]:
    """Insert the batch's event ids: the ones this group must apply now, and the highest version it applied
    before for each aggregate of ``history`` (that has one), in one round trip."""
    if not contexts:
        return set(), await last_versions(session, group, history or set())
    rows = await session.execute(_CLAIM, {**_claim_params(group, contexts), "aggregate_ids": list(history or ())})
    fresh: set[uuid.UUID] = set()
    previous: dict[uuid.UUID, int] = {}
    for event_id, aggregate_id, version in rows:
        if event_id is not None:
            fresh.add(event_id)
        else:
            previous[aggregate_id] = version
    return fresh, previous


async def claim_redriven(session: AsyncSession, group: str, contexts: Sequence[EventContext]) -> set[uuid.UUID]:
    """Claim events sent back from the dead-letter topic: a dead-lettered one may be applied this time."""
    if not contexts:
        return set()
    rows = await session.execute(_CLAIM_REDRIVEN, _claim_params(group, contexts))
    return {row.event_id for row in rows}


def _claim_params(group: str, contexts: Sequence[EventContext]) -> dict[str, object]:
    return {
        "group": group,
        "event_ids": [c.event_id for c in contexts],
        "aggregate_ids_claimed": [c.aggregate_id for c in contexts],
        "event_types": [c.event_type for c in contexts],
        "event_versions": [c.event_version for c in contexts],
        "topics": [c.topic for c in contexts],
        "partitions": [c.partition for c in contexts],
        "offsets": [c.offset for c in contexts],
    }


async def mark_dead_lettered(session: AsyncSession, group: str, event_ids: Sequence[uuid.UUID]) -> None:
    if event_ids:
        await session.execute(_MARK_DEAD, {"group": group, "ids": list(event_ids)})


async def clear(session: AsyncSession, group: str) -> int:
    """Forget what a group applied (a rebuild replays everything into an emptied projection)."""
    result = await session.execute(text("DELETE FROM inbox WHERE consumer_group = :group"), {"group": group})
    return int(getattr(result, "rowcount", 0) or 0)
