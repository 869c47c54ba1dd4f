"""A consumer group's definition: which events it handles and the async handlers that apply them.

    stats = ConsumerGroup("customer-stats")

    @stats.handler("order.created")
    async def count_order(session: AsyncSession, event: OrderCreated, ctx: EventContext) -> None: ...

Handlers run inside the runtime's database transaction (never commit in a handler) after the event id
went into the inbox, so each event is applied once per group however often Kafka delivers it.
A batch handler receives every event of its type in a polled batch at once, for set-based SQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from outbox.dead_letters import REDRIVE_HEADER, dead_letter_topic
from outbox.events import EventRegistry, default_registry
from outbox.routing import topic_for_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["REDRIVE_HEADER", "BatchHandler", "ConsumerGroup", "EventContext", "Handler", "Prepare", "Probe", "Skip"]


@dataclass(slots=True)
class EventContext:
    """Where an event came from, and what this group last applied for its aggregate."""

    event_id: uuid.UUID
    aggregate_id: uuid.UUID | None
    aggregate_type: str
    event_type: str
    event_version: int | None
    schema_version: int
    topic: str
    partition: int
    offset: int
    timestamp: dt.datetime
    # The highest event_version this group applied for the aggregate before this event (None: first
    # seen). Stamped by the runtime inside the batch's transaction; handlers treat the context as read-only.
    # A version-1 event that opens its aggregate's run in a batch is taken as first seen without a lookup
    # (the outbox numbers each aggregate from 1), so it is never counted stale.
    previous_version: int | None = None
    # Sent back from this group's dead-letter topic by an operator (python -m outbox.dlq redrive).
    redriven: bool = False
    # The request (X-Request-ID) whose work wrote the event, or None (outbox/correlation.py).
    correlation_id: str | None = None

    @property
    def is_gap(self) -> bool:
        """True when at least one earlier version of this aggregate was never applied here."""
        return (
            self.previous_version is not None
            and self.event_version is not None
            and self.event_version > self.previous_version + 1
        )

    @property
    def is_stale(self) -> bool:
        """True when a newer version of this aggregate was applied already (an out-of-order event)."""
        return (
            self.previous_version is not None
            and self.event_version is not None
            and self.event_version <= self.previous_version
        )


Handler = Callable[["AsyncSession", Any, EventContext], Awaitable[None]]
BatchHandler = Callable[["AsyncSession", Sequence[tuple[Any, EventContext]]], Awaitable[None]]
# True for an event (its decoded payload) that its handler would leave every row unchanged for.
Skip = Callable[[Any], bool]
# Run with a batch's events of one type (decoded payloads, partition order) before its transaction opens.
Prepare = Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Probe:
    """A cheaper first look for a ``skip``: a struct of the few payload fields it reads, and the same decision
    made on it. A record the probe skips is not decoded whole (a pending order's order.created: ~10 us for
    the whole decode of the payload and its context, ~1 us for one field), so ``skip(probe_struct)`` must be
    true exactly when the handler's ``skip`` is true for the decoded event. A payload the probe cannot read
    goes on to the whole decode, which decides as before (poison, skip or apply)."""

    struct: type[msgspec.Struct]
    skip: Callable[[Any], bool]


@dataclass
class ConsumerGroup:
    """A Kafka consumer group and its handlers; the runtime subscribes to the topics they imply."""

    name: str
    registry: EventRegistry = field(default=default_registry)
    handlers: dict[str, Handler] = field(default_factory=dict)
    batch_handlers: dict[str, BatchHandler] = field(default_factory=dict)
    extra_topics: set[str] = field(default_factory=set)
    # Read these topics instead of the ones the handlers imply (benchmarks, migrations between topics).
    topic_override: list[str] | None = None
    # Stamp EventContext.previous_version (and count gaps and stale events) from the inbox: one indexed
    # query per batch for the aggregates seen before (new ones, at version 1, need none). Off for groups whose handlers
    # never look at versions and that can do without the gap metrics.
    track_versions: bool = True
    # After the first event that needs the database, wait up to this long for more (up to the batch size)
    # before handing the batch over: fewer, larger transactions at moderate rates, for up to this much
    # latency per hop. 0 (the default) hands a batch over at once; only groups off the latency-measured path
    # set it (docs/decisions.md, "Consumer linger").
    linger_ms: int = 0
    # Let the broker hold each of this group's fetches up to this long to gather more (fetch.wait.max.ms with
    # a fetch.min.bytes that such a wait does not reach at the stack's rates): fewer, fuller fetches wake the
    # consumer and the broker less often, also for the events the group ignores, which linger_ms cannot merge;
    # for up to this much latency per hop, and an idle group asks the broker every this many ms instead of
    # every second. 0 (the default): the broker answers at the first record (docs/decisions.md, "Fetch wait").
    fetch_wait_ms: int = 0
    # Per event type, the events its handler changes nothing for (the ``skip`` of handler/batch_handler).
    skips: dict[str, Skip] = field(default_factory=dict)
    # Per event type, what to do before the batch's transaction opens (see ``prepare``).
    prepares: dict[str, Prepare] = field(default_factory=dict)
    # Per event type, the skip's Probe as a decoder built once and its predicate (see ``batch_handler``).
    probes: dict[str, tuple[msgspec.json.Decoder[Any], Callable[[Any], bool]]] = field(default_factory=dict)

    def handler(
        self, event_type: str, *, skip: Skip | None = None, probe: Probe | None = None
    ) -> Callable[[Handler], Handler]:
        """Register an async handler applied to one event at a time, in partition order (``skip`` and
        ``probe``: see batch_handler)."""

        def register(fn: Handler) -> Handler:
            self._claim(event_type, skip, probe)
            self.handlers[event_type] = fn
            return fn

        return register

    def batch_handler(
        self, event_type: str, *, skip: Skip | None = None, probe: Probe | None = None
    ) -> Callable[[BatchHandler], BatchHandler]:
        """Register a handler that gets all of a batch's events of this type, in partition order.

        ``skip(event)``, if given, is true for an event the handler would leave every row unchanged for (a
        projection's order.created of an order not confirmed yet). Such an event is neither claimed in the
        inbox nor handed to the handler: it is counted as ignored and only its offset moves, which at one
        event per batch saves a whole transaction. It must be a pure function of the payload, so that every
        delivery, redelivery and replay decides alike: applying nothing, however often, is still exactly
        once. Versions: a skipped event leaves no inbox row, so the group's next event of that aggregate
        sees the last one *applied* as its previous_version (none after a skipped version 1: first seen,
        not a gap), exactly as if the skipped event had been of a type the group does not handle.

        ``probe`` (a Probe, with ``skip`` only) makes the same decision from a few fields, before the whole
        decode: what it skips is never decoded whole, so a record it skips that the whole decode would have
        refused (a malformed field the skip does not read) is ignored by this group rather than dead-lettered;
        a group that applies the event (the warehouse's order.created) still decodes it whole. The record's
        identity headers are checked first as for any event, and a redrive is never probed.
        """

        def register(fn: BatchHandler) -> BatchHandler:
            self._claim(event_type, skip, probe)
            self.batch_handlers[event_type] = fn
            return fn

        return register

    def prepare(self, event_type: str) -> Callable[[Prepare], Prepare]:
        """Register a coroutine the runtime awaits with a batch's events of this type before it opens the
        batch's transaction: the remote calls their handler needs, made there and their answers cached
        where the handler reads them. Made by the handler, a call would hold the transaction, its inbox
        claims and every row the batch's earlier events locked until the other service answered. A
        retryable failure (outbox.retry) retries the batch with backoff, as a database error does, with
        nothing opened; any other is left to the handler, which meets it in the transaction and has the
        event dead-lettered as before. Redeliveries are prepared too (the inbox is only read later)."""

        def register(fn: Prepare) -> Prepare:
            if not self.handles(event_type):
                raise ValueError(f"{self.name}: {event_type} has no handler to prepare for")
            self.prepares[event_type] = fn
            return fn

        return register

    def _claim(self, event_type: str, skip: Skip | None, probe: Probe | None = None) -> None:
        if event_type in self.handlers or event_type in self.batch_handlers:
            raise ValueError(f"{self.name}: {event_type} already has a handler")
        if probe is not None and skip is None:
            raise ValueError(f"{self.name}: {event_type}'s probe stands for a skip, and there is none")
        self.registry.aggregate_of(event_type)  # fails early for an unregistered event type
        if skip is not None:
            self.skips[event_type] = skip
        if probe is not None:
            self.probes[event_type] = (msgspec.json.Decoder(probe.struct), probe.skip)

    @property
    def event_types(self) -> set[str]:
        return set(self.handlers) | set(self.batch_handlers)

    @property
    def topics(self) -> list[str]:
        if self.topic_override is not None:
            return sorted(self.topic_override)
        # Per event type, not per aggregate: a stream's events are on a topic of their own (outbox.routing).
        return sorted({topic_for_event(event_type) for event_type in self.event_types} | self.extra_topics)

    @property
    def dead_letter_topic(self) -> str:
        return dead_letter_topic(self.name)

    def handles(self, event_type: str) -> bool:
        return event_type in self.handlers or event_type in self.batch_handlers
