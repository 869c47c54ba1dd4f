"""The consumer runtime: poll a batch, apply it exactly once in one database transaction, then commit offsets.

Per batch: decode -> inbox insert (new ids only) -> handlers, all in one transaction -> dead letters produced
and flushed -> database commit -> Kafka offset commit. A crash anywhere before the offset commit redelivers
the batch, and the inbox turns the redelivery into a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections import Counter as CounterOf
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from outbox import inbox, metrics
from outbox.config import kafka_bootstrap
from outbox.consumer import REDRIVE_HEADER, ConsumerGroup, EventContext
from outbox.errors import PoisonMessage, RetryableError
from outbox.events import Event, decode_payload
from outbox.topics import ensure_topics

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("outbox.runtime")

# SQLSTATEs worth retrying: serialization failure, deadlock, lock timeout, shutdown, too many connections.
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"}


@dataclass(frozen=True, slots=True)
class Parsed:
    """A message that decoded into an event this group handles."""

    message: Message
    event: Event
    ctx: EventContext


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that can never be applied; it goes to the dead-letter topic."""

    message: Message
    error: str
    error_type: str
    event_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """One poll's messages, decoded: what to apply, what is poison, what this group does not handle."""

    messages: list[Message]
    parsed: list[Parsed]
    poison: list[Poison]
    ignored: list[Message]


class Stopped(Exception):
    """Shutdown was requested while a batch was waiting to be retried; it was not committed."""


class _IsolateBatch(Exception):
    """A handler failed for good in the fast path; rerun the batch one savepoint per event."""


def is_retryable(exc: BaseException) -> bool:
    """Transient errors (database down, deadlock) are retried; anything else is the message's fault."""
    if isinstance(exc, RetryableError | OSError | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = _sqlstate(exc)
        return state is not None and (state in RETRYABLE_SQLSTATES or state.startswith("08"))
    return False


def _sqlstate(exc: DBAPIError) -> str | None:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _raw_headers(message: Message) -> list[tuple[str, bytes | None]]:
    return cast("list[tuple[str, bytes | None]]", message.headers() or [])


def _header_map(message: Message) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in _raw_headers(message) if value is not None}


def _where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed (error-free) message, which always has all three."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _timestamp(message: Message) -> dt.datetime:
    _, millis = message.timestamp()
    return dt.datetime.fromtimestamp(max(millis, 0) / 1000, tz=dt.UTC)


class ConsumerRuntime:
    """Runs one ConsumerGroup against Kafka and the group's database."""

    def __init__(
        self,
        group: ConsumerGroup,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        bootstrap: str | None = None,
        batch_size: int = 1000,
        poll_timeout: float = 0.5,
        max_backoff: float = 30.0,
        kafka_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.group = group
        self.session_factory = session_factory
        self.bootstrap = bootstrap or kafka_bootstrap()
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self.kafka_overrides = kafka_overrides or {}
        self.stop_requested = asyncio.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._last_lag_check = 0.0
        self._offsets: dict[tuple[str, int], int] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def _open(self) -> None:
        ensure_topics(self.bootstrap, [*self.group.topics, self.group.dead_letter_topic])
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group.name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 10000,
                **self.kafka_overrides,
            }
        )
        self._producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        self._consumer.subscribe(self.group.topics)
        log.info("group %s subscribed to %s", self.group.name, ", ".join(self.group.topics))

    async def run(self) -> None:
        """Consume until stop() is called; the batch in flight finishes and commits first."""
        await asyncio.to_thread(self._open)
        consumer = self._consumer
        assert consumer is not None
        # The next batch is polled and decoded in a worker thread while this one is applied: Kafka and
        # Python decoding overlap the database round trips. A prefetched batch that is never applied is
        # simply not committed, so Kafka redelivers it.
        prefetch = asyncio.create_task(asyncio.to_thread(self._fetch))
        try:
            while not self.stop_requested.is_set():
                batch = await prefetch
                prefetch = asyncio.create_task(asyncio.to_thread(self._fetch))
                if batch.messages:
                    try:
                        await self.apply_batch(batch)
                    except Stopped:
                        break
                self._report_lag()
        finally:
            with contextlib.suppress(Exception):
                await prefetch
            await asyncio.to_thread(self._close)

    def stop(self) -> None:
        self.stop_requested.set()

    def _fetch(self) -> Batch:
        consumer = self._consumer
        assert consumer is not None
        # Wait for the first record, then take only what is already buffered: consume(n, timeout) would
        # otherwise hold a lone event until n arrive or the timeout passes (latency, not throughput).
        # Under load the buffer fills while a batch is applied, so batches grow by themselves.
        first = consumer.consume(1, self.poll_timeout)
        rest = consumer.consume(self.batch_size - 1, 0) if first and self.batch_size > 1 else []
        messages = [m for m in first + rest if self._usable(m)]
        return self._parse(messages)

    def _close(self) -> None:
        if self._consumer is not None and self._offsets:
            with contextlib.suppress(Exception):
                self._consumer.commit(offsets=self._offset_list(), asynchronous=False)
        if self._producer is not None:
            self._producer.flush(10)
        if self._consumer is not None:
            self._consumer.close()
        log.info("group %s closed", self.group.name)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
            log.warning("group %s: kafka error %s", self.group.name, error)
        return False

    # -- one batch ---------------------------------------------------------------------------------

    async def process(self, messages: Sequence[Message]) -> None:
        """Apply a batch of raw messages exactly once, then commit their offsets."""
        await self.apply_batch(self._parse([m for m in messages if self._usable(m)]))

    async def apply_batch(self, batch: Batch) -> None:
        """Apply a decoded batch exactly once, retrying transient errors, then commit its offsets."""
        started = time.perf_counter()
        parsed, poison, ignored = batch.parsed, batch.poison, batch.ignored
        isolate = False
        attempt = 0
        while True:
            try:
                await self._apply(parsed, poison, isolate=isolate)
                break
            except _IsolateBatch:
                isolate = True
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                attempt += 1
                metrics.RETRIES.labels(self.group.name, type(exc).__name__).inc()
                delay = min(self.max_backoff, 0.2 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
                log.warning("group %s: transient error (%s), retry %d in %.1fs", self.group.name, exc, attempt, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_requested.wait(), timeout=delay)
                if self.stop_requested.is_set():
                    raise Stopped from exc
        for message in ignored:
            metrics.EVENTS.labels(self.group.name, _header_map(message).get("event_type", "?"), "ignored").inc()
        self._commit_offsets(batch.messages)
        metrics.BATCHES.labels(self.group.name).inc()
        metrics.BATCH_SECONDS.labels(self.group.name).observe(time.perf_counter() - started)

    def _parse(self, messages: list[Message]) -> Batch:
        parsed: list[Parsed] = []
        poison: list[Poison] = []
        ignored: list[Message] = []
        for message in messages:
            headers = _header_map(message)
            event_type = headers.get("event_type", "")
            if event_type and not self.group.handles(event_type):
                ignored.append(message)
                continue
            try:
                parsed.append(self._decode(message, headers))
            except (PoisonMessage, ValueError, KeyError) as exc:
                event_id = _maybe_uuid(headers.get("id"))
                poison.append(Poison(message, str(exc) or repr(exc), type(exc).__name__, event_id))
        return Batch(messages, parsed, poison, ignored)

    def _decode(self, message: Message, headers: dict[str, str]) -> Parsed:
        if "id" not in headers or "event_type" not in headers:
            raise PoisonMessage("missing 'id' or 'event_type' header")
        event_type = headers["event_type"]
        schema_version = int(headers.get("schema_version", "1"))
        event = decode_payload(event_type, schema_version, message.value() or b"", self.group.registry)
        key = message.key()
        topic, partition, offset = _where(message)
        ctx = EventContext(
            event_id=uuid.UUID(headers["id"]),
            aggregate_id=_maybe_uuid(key.decode() if key else None),
            aggregate_type=headers.get("aggregate_type", event.aggregate_type),
            event_type=event_type,
            event_version=int(headers["event_version"]) if headers.get("event_version") else None,
            schema_version=schema_version,
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=_timestamp(message),
            redriven=headers.get(REDRIVE_HEADER) == self.group.name,
        )
        return Parsed(message, event, ctx)

    async def _apply(self, parsed: list[Parsed], poison: list[Poison], *, isolate: bool) -> None:
        group = self.group.name
        async with self.session_factory() as session, session.begin():
            unique = _first_occurrences(parsed)
            previous = (
                await inbox.last_versions(
                    session, group, {p.ctx.aggregate_id for p in unique if p.ctx.aggregate_id is not None}
                )
                if self.group.track_versions
                else None
            )
            if previous is not None:
                for p in unique:
                    _stamp_previous(p.ctx, previous)
            fresh = await inbox.claim(session, group, [p.ctx for p in unique if not p.ctx.redriven])
            fresh |= await inbox.claim(session, group, [p.ctx for p in unique if p.ctx.redriven], redriven=True)
            to_apply = [p for p in unique if p.ctx.event_id in fresh]
            rejected = await self._run_handlers(session, to_apply, isolate=isolate)
            dead = poison + rejected
            if dead:
                await inbox.mark_dead_lettered(session, group, [d.event_id for d in rejected if d.event_id])
                await asyncio.to_thread(self._dead_letter, dead)
        # Metrics only after the commit: a rolled-back batch applied nothing.
        applied = {p.ctx.event_id for p in to_apply} - {d.event_id for d in rejected}
        outcomes: CounterOf[tuple[str, str]] = CounterOf()
        for p in parsed:
            outcome = "applied" if p.ctx.event_id in applied else "duplicate"
            if outcome == "applied":
                applied.discard(p.ctx.event_id)  # a second copy in the same batch is a duplicate
                self._note_versions(p.ctx)
            outcomes[(p.ctx.event_type, outcome)] += 1
        for d in dead:
            outcomes[(_header_map(d.message).get("event_type", "?"), "dead_lettered")] += 1
        for (event_type, outcome), count in outcomes.items():
            metrics.EVENTS.labels(group, event_type, outcome).inc(count)

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
        return (event_type, True) if event_type in self.group.batch_handlers else (event_type, False)

    async def _call(
        self, session: AsyncSession, chunk: list[Parsed], isolate: bool, batch_of: str | None = None
    ) -> list[Poison]:
        async def invoke(items: list[Parsed]) -> None:
            if batch_of is not None:
                await self.group.batch_handlers[batch_of](session, [(p.event, p.ctx) for p in items])
            else:
                await self.group.handlers[items[0].ctx.event_type](session, items[0].event, items[0].ctx)

        if not isolate:
            try:
                await invoke(chunk)
            except Exception as exc:
                if is_retryable(exc):
                    raise
                raise _IsolateBatch from exc
            return []
        try:
            async with session.begin_nested():
                await invoke(chunk)
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
            log.error("group %s: %s %s rejected: %r", self.group.name, item.ctx.event_type, item.ctx.event_id, exc)
            return [Poison(item.message, str(exc) or repr(exc), type(exc).__name__, item.ctx.event_id)]

    # -- Kafka side effects ------------------------------------------------------------------------

    def _dead_letter(self, dead: Sequence[Poison]) -> None:
        producer = self._producer
        assert producer is not None
        failed_at = dt.datetime.now(dt.UTC).isoformat()
        for item in dead:
            message = item.message
            topic, partition, offset = _where(message)
            headers: list[tuple[str, str | bytes | None]] = list(_raw_headers(message))
            headers += [
                ("dlq.error", item.error[:2000]),
                ("dlq.error_type", item.error_type),
                ("dlq.consumer_group", self.group.name),
                ("dlq.original_topic", topic),
                ("dlq.original_partition", str(partition)),
                ("dlq.original_offset", str(offset)),
                ("dlq.failed_at", failed_at),
            ]
            producer.produce(self.group.dead_letter_topic, key=message.key(), value=message.value(), headers=headers)
        # The dead letters must be durable before the batch commits and its offsets move on.
        remaining = producer.flush(30)
        if remaining:
            raise RetryableError(f"{remaining} dead letters not acknowledged by Kafka")
        metrics.DEAD_LETTERS.labels(self.group.name).inc(len(dead))

    def _commit_offsets(self, messages: Sequence[Message]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for message in messages:
            topic, partition, offset = _where(message)
            self._offsets[(topic, partition)] = max(self._offsets.get((topic, partition), -1), offset + 1)
        # Asynchronous: the database already holds the truth (the inbox), so a lost commit only means a
        # harmless redelivery. Every partition's latest offset is committed synchronously on shutdown.
        try:
            consumer.commit(offsets=self._offset_list(), asynchronous=True)
        except Exception as exc:  # a rebalance took the partitions; the next owner re-reads (inbox dedupes)
            log.warning("group %s: offset commit failed: %s", self.group.name, exc)

    def _offset_list(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._offsets.items()]

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_check < 5 or self._consumer is None:
            return
        self._last_lag_check = now
        for tp in self._consumer.position(self._consumer.assignment()):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                metrics.LAG.labels(self.group.name, tp.topic, str(tp.partition)).set(high - tp.offset)


def _maybe_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _first_occurrences(items: list[Parsed]) -> list[Parsed]:
    seen: set[uuid.UUID] = set()
    unique = []
    for item in items:
        if item.ctx.event_id not in seen:
            seen.add(item.ctx.event_id)
            unique.append(item)
    return unique


def _stamp_previous(ctx: EventContext, last: dict[uuid.UUID, int]) -> None:
    """Set previous_version, advancing the running maximum through the batch."""
    if ctx.aggregate_id is None:
        return
    previous = last.get(ctx.aggregate_id)
    if ctx.event_version is not None and (previous is None or ctx.event_version > previous):
        last[ctx.aggregate_id] = ctx.event_version
    ctx.previous_version = previous
