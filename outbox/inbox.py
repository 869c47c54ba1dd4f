"""The consumer inbox: record event ids first, so a redelivered or replayed event is skipped."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import EventContext

APPLIED = "applied"
DEAD_LETTERED = "dead_lettered"
# A dead-lettered event an operator marked handled (`just dlq ack`): it can never apply. Kept by a rebuild
# (outbox.replay), so a replay skips it (a claim finds the row) or, for a record that does not even decode,
# counts it as seen again instead of dead-lettering it anew: a replay paged for poison already handled
# (customer-stats, session 30: one record dead-lettered 37 times, 23 pending after a day's replays).
ACKNOWLEDGED = "acknowledged"

# One statement for the whole batch. Each column comes as one text parameter, an array literal made off
# the event loop (claim_parameters), which PostgreSQL parses: asyncpg encoding seven arrays element by
# element cost the loop thread more than the rest of the claim. A plain redelivery of a dead-lettered
# event stays dead-lettered (it would only fail again); a redrive (a deliberate resend from the
# dead-letter topic) may apply it, an acknowledged one too.
_INPUT_SQL = """
    SELECT t.* FROM unnest(CAST(CAST(:event_ids AS text) AS uuid[]),
                           CAST(CAST(:aggregate_ids_claimed AS text) AS uuid[]),
                           CAST(CAST(:event_types AS text) AS text[]), CAST(CAST(:event_versions AS text) AS int[]),
                           CAST(CAST(:topics AS text) AS text[]), CAST(CAST(:partitions AS text) AS int[]),
                           CAST(CAST(:offsets AS text) AS bigint[]))
         AS t(event_id, aggregate_id, event_type, event_version, topic, kafka_partition, kafka_offset)
"""
_INSERT_SQL = """
    INSERT INTO inbox AS i (consumer_group, event_id, aggregate_id, event_type, event_version, outcome,
                            topic, kafka_partition, kafka_offset)
    SELECT :group, t.event_id, t.aggregate_id, t.event_type, t.event_version, 'applied',
           t.topic, t.kafka_partition, t.kafka_offset
    FROM {source} AS t
    {on_conflict}
    RETURNING event_id
"""
_LAST_VERSIONS_SQL = """
    SELECT aggregate_id, max(event_version) AS version FROM inbox
    WHERE consumer_group = :group AND aggregate_id = ANY(CAST(CAST(:aggregate_ids AS text) AS uuid[]))
      AND outcome = 'applied'
    GROUP BY aggregate_id
"""
# The claim and the versions this group applied before for the aggregates with history, in one round trip:
# every part of a statement sees the snapshot taken before its inserts, so the versions found are the ones
# applied before this batch. It answers the event ids that were NOT claimed (already in the inbox: rarely
# any) rather than the thousand that were. Rows with an event_id are duplicates, rows with an
# aggregate_id versions.
_CLAIM_SQL = f"""
    WITH input AS ({_INPUT_SQL}),
    claimed AS ({_INSERT_SQL.format(source="input", on_conflict="ON CONFLICT (consumer_group, event_id) DO NOTHING")}),
    previous AS ({_LAST_VERSIONS_SQL})
    SELECT d.event_id, CAST(NULL AS uuid) AS aggregate_id, CAST(NULL AS int) AS version
    FROM (SELECT event_id FROM input EXCEPT ALL SELECT event_id FROM claimed) AS d
    UNION ALL
    SELECT CAST(NULL AS uuid), aggregate_id, version FROM previous
"""
_CLAIM_REDRIVEN = text(
    _INSERT_SQL.format(
        source=f"({_INPUT_SQL})",
        on_conflict="""ON CONFLICT (consumer_group, event_id) DO UPDATE
        SET outcome = 'applied', processed_at = now(), topic = excluded.topic,
            kafka_partition = excluded.kafka_partition, kafka_offset = excluded.kafka_offset
        WHERE i.outcome IN ('dead_lettered', 'acknowledged')""",
    )
)
_LAST_VERSIONS = text(_LAST_VERSIONS_SQL)

# What a rebuild forgets of a group (outbox.replay): everything but what `just dlq ack` recorded.
CLEAR_SQL = "DELETE FROM inbox WHERE consumer_group = :group AND outcome <> 'acknowledged'"

_MARK_DEAD = text(
    "UPDATE inbox SET outcome = 'dead_lettered' WHERE consumer_group = :group AND event_id = ANY(CAST(:ids AS uuid[]))"
)


# Touches processed_at: when an acknowledged poison record was last read again (the count is the consumer's
# outbox_consumer_events_total{outcome="acknowledged_again"}).
_SEEN_AGAIN = text(
    "UPDATE inbox SET processed_at = now() WHERE consumer_group = :group AND outcome = 'acknowledged' "
    "AND event_id = ANY(CAST(:ids AS uuid[])) RETURNING event_id"
)
# A letter's event marked acknowledged: a new row for a record that never decoded (no claim wrote one), the
# dead-lettered row of one its handler rejected. Never an applied one (a redrive applied it since).
_ACKNOWLEDGE = text(
    """
    INSERT INTO inbox AS i (consumer_group, event_id, event_type, outcome, topic, kafka_partition, kafka_offset)
    SELECT :group, t.event_id, t.event_type, 'acknowledged', t.topic, t.kafka_partition, t.kafka_offset
    FROM unnest(CAST(CAST(:event_ids AS text) AS uuid[]), CAST(CAST(:event_types AS text) AS text[]),
                CAST(CAST(:topics AS text) AS text[]), CAST(CAST(:partitions AS text) AS int[]),
                CAST(CAST(:offsets AS text) AS bigint[]))
         AS t(event_id, event_type, topic, kafka_partition, kafka_offset)
    ON CONFLICT (consumer_group, event_id) DO UPDATE SET outcome = 'acknowledged', processed_at = now()
    WHERE i.outcome = 'dead_lettered'
    """
)


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` parameters as asyncpg's ``$n``, and the names in their order (for the driver's connection)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<![:\w]):([a-z_]+)", number, sql), tuple(names)


# The claim as the runtime sends it, on asyncpg's own connection in the session's transaction
# (outbox.connection): a third of the CPU of a one-event batch went to SQLAlchemy's execute of it.
_CLAIM_DRIVER, _CLAIM_NAMES = positional(_CLAIM_SQL)


def array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of uuids or integers (None is NULL): their str() needs no quoting."""
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def text_array_literal(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted (so "NULL" stays a string) and escaped."""
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def claim_parameters(contexts: Sequence[EventContext]) -> dict[str, str]:
    """The claim's columns as array literals; pure, so the runtime makes them in its prefetch thread."""
    return {
        "event_ids": array_literal([c.event_id for c in contexts]),
        "aggregate_ids_claimed": array_literal([c.aggregate_id for c in contexts]),
        "event_types": text_array_literal([c.event_type for c in contexts]),
        "event_versions": array_literal([c.event_version for c in contexts]),
        "topics": text_array_literal([c.topic for c in contexts]),
        "partitions": array_literal([c.partition for c in contexts]),
        "offsets": array_literal([c.offset for c in contexts]),
    }


async def last_versions(session: AsyncSession, group: str, aggregate_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not aggregate_ids:
        return {}
    rows = await session.execute(_LAST_VERSIONS, {"group": group, "aggregate_ids": array_literal(aggregate_ids)})
    return {row.aggregate_id: row.version for row in rows}


async def claim(
    session: AsyncSession,
    group: str,
    contexts: Sequence[EventContext],
    *,
    history: set[uuid.UUID] | None = None,
    parameters: dict[str, str] | None = None,
    driver: Any,
) -> tuple[set[uuid.UUID], dict[uuid.UUID, int]]:
    """Insert the batch's event ids (distinct): the ones already in the inbox, which this group must not
    apply again, and the highest version it applied before for each aggregate of ``history`` (that has
    one), in one round trip. ``parameters``: claim_parameters(contexts), when made beforehand. ``driver``:
    the session's asyncpg connection (outbox.connection), which the claim is sent on."""
    if not contexts:
        return set(), await last_versions(session, group, history or set())
    params = {
        **(parameters or claim_parameters(contexts)),
        "group": group,
        "aggregate_ids": array_literal(history or ()),
    }
    duplicates: set[uuid.UUID] = set()
    previous: dict[uuid.UUID, int] = {}
    for event_id, aggregate_id, version in await driver.fetch(_CLAIM_DRIVER, *[params[n] for n in _CLAIM_NAMES]):
        if event_id is not None:
            duplicates.add(event_id)
        else:
            previous[aggregate_id] = version
    return duplicates, previous


async def claim_redriven(session: AsyncSession, group: str, contexts: Sequence[EventContext]) -> set[uuid.UUID]:
    """Claim events sent back from the dead-letter topic: a dead-lettered one may be applied this time."""
    if not contexts:
        return set()
    rows = await session.execute(_CLAIM_REDRIVEN, {**claim_parameters(contexts), "group": group})
    return {row.event_id for row in rows}


async def mark_dead_lettered(session: AsyncSession, group: str, event_ids: Sequence[uuid.UUID]) -> None:
    if event_ids:
        await session.execute(_MARK_DEAD, {"group": group, "ids": list(event_ids)})


async def acknowledged_again(session: AsyncSession, group: str, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Of these events (poison read again), those whose dead letter was acknowledged; marked seen now."""
    if not event_ids:
        return set()
    rows = await session.execute(_SEEN_AGAIN, {"group": group, "ids": list(event_ids)})
    return {row.event_id for row in rows}


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A dead letter's event, as `just dlq ack` records it: its id and where its record came from."""

    event_id: uuid.UUID
    event_type: str
    topic: str
    partition: int
    offset: int


async def record_acknowledged(session: AsyncSession, group: str, letters: Sequence[Acknowledged]) -> None:
    if letters:
        await session.execute(
            _ACKNOWLEDGE,
            {
                "group": group,
                "event_ids": array_literal(a.event_id for a in letters),
                "event_types": text_array_literal(a.event_type[:100] for a in letters),
                "topics": text_array_literal(a.topic[:255] for a in letters),
                "partitions": array_literal(a.partition for a in letters),
                "offsets": array_literal(a.offset for a in letters),
            },
        )


async def clear(session: AsyncSession, group: str) -> int:
    """Forget what a group applied (a rebuild replays everything into an emptied projection), apart from the
    events whose dead letters were acknowledged (ACKNOWLEDGED)."""
    result = await session.execute(text(CLEAR_SQL), {"group": group})
    return int(getattr(result, "rowcount", 0) or 0)
