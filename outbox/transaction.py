"""The exactly-once step: one database transaction per batch for inbox claims, handlers and dead letters.

In the transaction: the batch's event ids go into the inbox (new ones only), the handlers run on the new
ones in partition order, rejected events are marked dead-lettered and their dead letters are produced and
acknowledged by Kafka. The caller commits offsets only after this returns, so a crash anywhere before
redelivers the batch and the inbox makes that a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING

from outbox import inbox, metrics
from outbox.connection import PinnedSession
from outbox.correlation import correlation_id
from outbox.dead_letters import REDRIVE_HEADER
from outbox.decoding import Parsed, Poison, event_type_of, raw_headers
from outbox.retry import is_retryable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from outbox.consumer import ConsumerGroup, EventContext
    from outbox.dead_letters import DeadLetterOrigin

log = logging.getLogger("outbox.runtime")

SendDeadLetters = Callable[[Sequence["DeadLetterOrigin"]], None]


class IsolateBatch(Exception):
    """A handler failed for good in the fast path; rerun the batch one savepoint per event."""


class BatchTransaction:
    """Applies decoded batches of one group in its database."""

    def __init__(
        self,
        group: ConsumerGroup,
        session_factory: async_sessionmaker[AsyncSession],
        send_dead_letters: SendDeadLetters,
    ) -> None:
        self.group = group
        self.session_factory = session_factory
        self.send_dead_letters = send_dead_letters
        # One connection and session kept across batches; the claim goes on the driver's connection.
        self.pinned = PinnedSession(session_factory)

    async def close(self) -> None:
        """Give the kept connection back (at shutdown)."""
        await self.pinned.discard()

    async def apply(
        self, parsed: list[Parsed], poison: list[Poison], *, isolate: bool, plan: Plan | None = None
    ) -> None:
        """One attempt. Raises IsolateBatch (rerun with isolate=True), or a transient error (retry).

        ``plan``: make_plan(group, parsed), when the caller made it beforehand (off the event loop)."""
        group = self.group.name
        plan = plan or make_plan(self.group, parsed)
        async with self.pinned.transaction() as (session, driver):
            # The versions applied before come back with the claim (one round trip, not two).
            duplicates, previous = await inbox.claim(
                session, group, plan.claims, history=plan.history, parameters=plan.parameters, driver=driver
            )
            if self.group.track_versions:
                for p in plan.unique:
                    _stamp_previous(p.ctx, previous)
            redriven = await inbox.claim_redriven(session, group, plan.redriven)
            to_apply = _fresh(plan, duplicates, redriven)
            rejected = await self._run_handlers(session, to_apply, isolate=isolate)
            poison, seen_again = await self._not_acknowledged(session, poison)
            dead = poison + rejected
            if dead:
                await inbox.mark_dead_lettered(session, group, [d.event_id for d in rejected if d.event_id])
                await asyncio.to_thread(self.send_dead_letters, [d.dead_letter() for d in dead])
                metrics.DEAD_LETTERS.labels(group).inc(len(dead))
        # Metrics only after the commit: a rolled-back batch applied nothing.
        self._count_outcomes(parsed, to_apply, rejected, dead)
        for again in seen_again:
            event_type = event_type_of(again.message, self.group.registry)
            metrics.EVENTS.labels(group, event_type, "acknowledged_again").inc()

    async def _not_acknowledged(self, session: AsyncSession, poison: list[Poison]) -> tuple[list[Poison], list[Poison]]:
        """The poison to dead-letter, and the records whose earlier letter was acknowledged (`just dlq ack`):
        read again (a replay, a redelivery), they are marked seen, not dead-lettered anew. A redriven record
        that fails again is dead-lettered all the same: someone sent it back to see it apply."""
        ids = [p.event_id for p in poison if p.event_id is not None and not _redriven(p)]
        if not ids:
            return poison, []
        seen = await inbox.acknowledged_again(session, self.group.name, ids)
        if not seen:
            return poison, []
        keep: list[Poison] = []
        again: list[Poison] = []
        for item in poison:
            (again if item.event_id in seen and not _redriven(item) else keep).append(item)
        return keep, again

    def _count_outcomes(
        self, parsed: list[Parsed], to_apply: list[Parsed], rejected: list[Poison], dead: list[Poison]
    ) -> None:
        outcomes: Counter[tuple[str, str]] = Counter()
        # The usual batch (every event new, all applied) needs no set of what was applied.
        applied = None if len(to_apply) == len(parsed) and not rejected else _applied_ids(to_apply, rejected)
        for p in parsed:
            outcome = "applied" if applied is None or p.ctx.event_id in applied else "duplicate"
            if outcome == "applied":
                if applied is not None:
                    applied.discard(p.ctx.event_id)  # a second copy in the same batch is a duplicate
                self._note_versions(p.ctx)
            outcomes[(p.ctx.event_type, outcome)] += 1
        for d in dead:
            outcomes[(event_type_of(d.message, self.group.registry), "dead_lettered")] += 1
        for (event_type, outcome), count in outcomes.items():
            metrics.EVENTS.labels(self.group.name, event_type, outcome).inc(count)

    def _note_versions(self, ctx: EventContext) -> None:
        if ctx.is_gap:
            metrics.VERSION_GAPS.labels(self.group.name, ctx.event_type).inc()
            log.warning(
                "group %s: %s %s v%s follows v%s (gap)",
                self.group.name,
                ctx.event_type,
                ctx.aggregate_id,
                ctx.event_version,
                ctx.previous_version,
            )
        elif ctx.is_stale:
            metrics.STALE_EVENTS.labels(self.group.name, ctx.event_type).inc()

    async def _run_handlers(self, session: AsyncSession, items: list[Parsed], *, isolate: bool) -> list[Poison]:
        """Run handlers in partition order; runs of one batch-handled type go to its batch handler at once."""
        rejected: list[Poison] = []
        for (event_type, is_batch), run in groupby(items, key=self._handler_kind):
            chunk = list(run)
            if is_batch:
                rejected += await self._call(session, chunk, isolate, batch_of=event_type)
            else:
                for item in chunk:
                    rejected += await self._call(session, [item], isolate)
        return rejected

    def _handler_kind(self, item: Parsed) -> tuple[str, bool]:
        event_type = item.ctx.event_type
        return event_type, event_type in self.group.batch_handlers

    async def _invoke(self, session: AsyncSession, items: list[Parsed], batch_of: str | None) -> None:
        # The consumed event's correlation id while its handler runs: its log lines carry it and the events it
        # writes inherit it (outbox/correlation.py). A batch's events may each have their own: it is set
        # only when they share one, and a batch handler passes each event's to the writer (events_parameters).
        first = items[0].ctx.correlation_id
        shared = first if len(items) == 1 or all(p.ctx.correlation_id == first for p in items) else None
        token = correlation_id.set(shared)
        try:
            if batch_of is not None:
                await self.group.batch_handlers[batch_of](session, [(p.event, p.ctx) for p in items])
            else:
                await self.group.handlers[items[0].ctx.event_type](session, items[0].event, items[0].ctx)
        finally:
            correlation_id.reset(token)

    async def _call(
        self, session: AsyncSession, chunk: list[Parsed], isolate: bool, batch_of: str | None = None
    ) -> list[Poison]:
        if not isolate:
            try:
                await self._invoke(session, chunk, batch_of)
            except Exception as exc:
                if is_retryable(exc):
                    raise
                raise IsolateBatch from exc
            return []
        try:
            async with session.begin_nested():
                await self._invoke(session, chunk, batch_of)
            return []
        except Exception as exc:
            if is_retryable(exc):
                raise
            if len(chunk) > 1:  # find the culprit(s) of a failed batch call one event at a time
                rejected: list[Poison] = []
                for item in chunk:
                    rejected += await self._call(session, [item], True, batch_of)
                return rejected
            item = chunk[0]
            log.error(
                "group %s: %s %s rejected: %r",
                self.group.name,
                item.ctx.event_type,
                item.ctx.event_id,
                exc,
                extra={"request_id": item.ctx.correlation_id},
            )
            return [Poison.of(item.message, exc, item.ctx.event_id)]


@dataclass(slots=True)
class Plan:
    """What a batch asks of the inbox, worked out from the decoded batch alone: pure, so the runtime makes
    it in its prefetch thread while the event loop waits on the database for the previous batch."""

    unique: list[Parsed]  # first occurrence of each event id, in partition order
    claims: list[EventContext]  # claimed plainly: a duplicate is skipped
    redriven: list[EventContext]  # sent back from the dead-letter topic: a dead-lettered one may apply
    history: set[uuid.UUID] | None  # aggregates whose previous versions to look up (None: not tracked)
    parameters: dict[str, str]  # the claim's array literals (inbox.claim_parameters of claims)


def make_plan(group: ConsumerGroup, parsed: list[Parsed]) -> Plan:
    unique = _first_occurrences(parsed)
    claims = [p.ctx for p in unique if not p.ctx.redriven]
    redriven = [p.ctx for p in unique if p.ctx.redriven] if len(claims) < len(unique) else []
    history = _aggregates_with_history(unique) if group.track_versions else None
    return Plan(unique, claims, redriven, history, inbox.claim_parameters(claims) if claims else {})


def _fresh(plan: Plan, duplicates: set[uuid.UUID], redriven: set[uuid.UUID]) -> list[Parsed]:
    """The events to apply now: claimed ones that were not in the inbox yet, and redriven ones let through."""
    if not duplicates and not plan.redriven:
        return plan.unique
    return [
        p for p in plan.unique if (p.ctx.event_id in redriven if p.ctx.redriven else p.ctx.event_id not in duplicates)
    ]


def _redriven(poison: Poison) -> bool:
    return any(name == REDRIVE_HEADER for name, _ in raw_headers(poison.message))


def _applied_ids(to_apply: list[Parsed], rejected: list[Poison]) -> set[uuid.UUID]:
    return {p.ctx.event_id for p in to_apply} - {d.event_id for d in rejected}


def _first_occurrences(items: list[Parsed]) -> list[Parsed]:
    seen: set[uuid.UUID] = set()
    unique = []
    for item in items:
        if item.ctx.event_id not in seen:
            seen.add(item.ctx.event_id)
            unique.append(item)
    return unique


def _aggregates_with_history(items: list[Parsed]) -> set[uuid.UUID]:
    """Aggregates whose first event in the batch may follow one applied earlier.

    An aggregate first seen at version 1 has nothing before it (the outbox numbers each aggregate's events
    from 1), so its lookup is skipped: a batch of new orders costs no index probes.
    """
    first: dict[uuid.UUID, int | None] = {}
    for item in items:
        if item.ctx.aggregate_id is not None:
            first.setdefault(item.ctx.aggregate_id, item.ctx.event_version)
    return {aggregate for aggregate, version in first.items() if version != 1}


def _stamp_previous(ctx: EventContext, last: dict[uuid.UUID, int]) -> None:
    """Set previous_version, advancing the running maximum through the batch."""
    if ctx.aggregate_id is None:
        return
    previous = last.get(ctx.aggregate_id)
    if ctx.event_version is not None and (previous is None or ctx.event_version > previous):
        last[ctx.aggregate_id] = ctx.event_version
    ctx.previous_version = previous
