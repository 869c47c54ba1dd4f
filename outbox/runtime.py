"""The consumer runtime: poll a batch, apply it exactly once in one database transaction, then commit offsets.

Per batch: decode (outbox.decoding) -> inbox insert, handlers and dead letters in one transaction
(outbox.transaction) -> database commit -> Kafka offset commit (outbox.kafka_client). A crash anywhere
before the offset commit redelivers the batch, and the inbox turns the redelivery into a no-op. Transient
errors (outbox.retry) are retried with backoff, without moving the offsets, for as long as they last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException
from sqlalchemy import text

from outbox import metrics
from outbox.config import kafka_bootstrap
from outbox.decoding import Batch, parse
from outbox.kafka_client import REJOIN_WITHIN_S, KafkaSide
from outbox.redaction import redact
from outbox.retry import backoff_delay, contended, is_retryable, waits_for
from outbox.transaction import BatchTransaction, IsolateBatch, Plan, make_plan

if TYPE_CHECKING:
    from confluent_kafka import Message
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from outbox.consumer import ConsumerGroup

__all__ = ["ConsumerRuntime", "Stopped", "is_retryable"]

log = logging.getLogger("outbox.runtime")

# Consecutive contention failures of one batch (a deadlock, a serialization failure, a lock timeout:
# outbox.retry.contended) retried without calling the consumer not ready. The database answered, and the
# first retry (0.2-0.4 s later) is expected to pass: /ready flapped to 503 for that moment on every
# deadlock retry. A third failure in a row (after 0.6-1.2 s of backoff) is no longer a moment's collision
# but a lock held for long or a hot spot that keeps losing: the consumer is not ready, as for any retry.
CONTENTION_RETRIES_READY = 2
# An idle consumer's prefetch thread hands an empty poll to the event loop only when the loop has work to do
# with it: a stop, a member stranded without partitions (it rejoins as soon as the loop sees it), or at least
# this often. Offsets and lag gauges need no hand-over: the thread that polls sends them. Every empty 0.5-s poll used
# to wake the loop and then the prefetch thread again: idle, a scratch runtime's loop and prefetch threads
# took 0.26-0.34 + 0.62-0.81 ms/s at 2.5 + 6.5 wake-ups/s, now 0.03-0.06 + 0.41-0.52 at 0.6 + 2.4 (session 32, K).
# A stop is still seen within one poll.
IDLE_HAND_OVER_S = 5.0


class Stopped(Exception):
    """Shutdown was requested while a batch was waiting to be retried; it was not committed."""


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
        instance_id: str | None = None,
        kafka_overrides: dict[str, Any] | None = None,
        rejoin_within: float = REJOIN_WITHIN_S,
    ) -> None:
        self.group = group
        self.session_factory = session_factory
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self.rejoin_within = rejoin_within
        self.stop_requested = asyncio.Event()
        self.kafka = KafkaSide(
            group.name,
            group.topics,
            bootstrap or kafka_bootstrap(),
            instance_id=instance_id,
            fetch_wait_ms=group.fetch_wait_ms,
            overrides=kafka_overrides,
        )
        self.transaction = BatchTransaction(group, session_factory, self.kafka.send_dead_letters)
        # Whether the last database round trip (the start-up probe or a batch) succeeded.
        self.database_ok = False
        # While a batch is being retried: what it waits for, the last error and since when (wall clock);
        # None while batches apply, and through a batch's first CONTENTION_RETRIES_READY contention
        # failures. One tuple, replaced whole: /ready reads it from another thread.
        self.waiting: tuple[str, str, float] | None = None
        self._closing = False  # run() is ending (a stop, or an error): read by the prefetch thread
        self._batches = metrics.BATCHES.labels(group.name)
        self._batch_seconds = metrics.BATCH_SECONDS.labels(group.name)

    @property
    def ready(self) -> bool:
        """Owns partitions, reached its database and no batch waits for a retry: what a readiness probe
        should wait for."""
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """The readiness verdict and what it rests on (the body of GET /ready). A batch that is being
        retried makes it not ready (past CONTENTION_RETRIES_READY contention failures in a row, for those),
        and the body names what it waits for: the database, or the dependency the error named (another
        service, Kafka), whose outage is not the database's."""
        # Read once: other threads move them.
        partitions, database, waiting = len(self.kafka.owned), self.database_ok, self.waiting
        ready = partitions > 0 and database and waiting is None
        body: dict[str, object] = {"ready": ready, "group": self.group.name, "partitions": partitions}
        body["database"] = database
        if waiting is None and partitions == 0 and (unassigned := self.kafka.unassigned) is not None:
            waiting = ("kafka", *unassigned)  # the group's coordinator, not a batch (KafkaSide.unassigned)
        if waiting is not None:
            dependency, error, since = waiting
            body["waiting_for"] = dependency
            body["error"] = error
            body["since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        return ready, body

    async def run(self) -> None:
        """Consume until stop() is called; the batch in flight finishes and commits first."""
        if not await self._open_kafka():
            return
        probe = asyncio.create_task(self._probe_database())
        # The next batch is polled and decoded in a worker thread while this one is applied: Kafka and
        # Python decoding overlap the database round trips. A prefetched batch that is never applied is
        # simply not committed, so Kafka redelivers it.
        prefetcher = Prefetcher(self._fetch, asyncio.get_running_loop())
        prefetch = prefetcher.request()
        try:
            while not self.stop_requested.is_set():
                batch, plan = await prefetch
                if self.kafka.stranded(self.rejoin_within):  # between polls: no thread is using the consumer
                    # A member is stranded mostly because the broker went away: joining again may have
                    # to wait for it, as a start does (an exception here ended the process for good).
                    await asyncio.to_thread(self.kafka.leave)
                    if not await self._open_kafka():
                        break
                batch, plan = self._top_up(batch, plan)  # also between polls
                prefetch = prefetcher.request()
                if batch.messages:
                    try:
                        await self.apply_batch(batch, plan)
                    except Stopped:
                        break
        finally:
            probe.cancel()
            self._closing = True  # an idle fetch in flight hands over after its poll, stopped or not
            prefetcher.close()  # its thread ends once the fetch in flight is answered
            with contextlib.suppress(Exception):
                await prefetch
            await self.transaction.close()
            await asyncio.to_thread(self.kafka.close)

    def stop(self) -> None:
        self.stop_requested.set()

    async def _open_kafka(self) -> bool:
        """Subscribe, retrying with backoff while the broker cannot be reached; False if stopped meanwhile.

        A consumer started while Kafka was down (restarting after a crash, or not up yet) exited at once on
        the topic check's metadata request, and stayed down: nothing starts a consumer again but `just up`."""
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self.kafka.open)
                return True
            except KafkaException as exc:
                if not unreachable(exc):
                    raise
                attempt += 1
                delay = backoff_delay(attempt, self.max_backoff)
                log.warning("group %s: Kafka unreachable (%s), retry %d in %.1fs", self.group.name, exc, attempt, delay)
                await self._wait(delay)
                if self.stop_requested.is_set():
                    return False

    def _fetch(self) -> tuple[Batch, Plan | None]:
        """Poll, decode and plan the next batch (in a worker thread: pure work, no database).

        Messages this group ignores (most of what it reads at the stack: other event types of its topics,
        and those its handlers skip) do not wake the event loop on their own: the thread polls on until
        something needs the database, the batch is full, the poll timeout passed, or Kafka has nothing,
        and hands over one batch (their offsets are committed with it). A wake-up of the loop for a lone
        ignored event cost about as much CPU as the poll and decoding of it.

        Applied offsets (COMMIT_INTERVAL_S) and the lag gauges are sent from here, between polls: the consumer
        is used by one thread at a time. A commit from the event loop waited for the poll in flight, and
        librdkafka's client let it wait for the polls after that too: an idle consumer's first commit held
        its event loop ~5 s (until IDLE_HAND_OVER_S ended the thread's polling)."""
        idle_since = time.monotonic()
        while True:
            self.kafka.commit_due()
            self.kafka.report_lag()
            started = time.monotonic()
            messages = self.kafka.fetch(self.batch_size, self.poll_timeout)
            if messages or self._hand_over_empty(idle_since):
                break
        batch = parse(self.group, messages)
        while batch.messages and not batch.needs_database and len(batch.messages) < self.batch_size:
            left = self.poll_timeout - (time.monotonic() - started)
            if left <= 0 or self.stop_requested.is_set():
                break
            more = self.kafka.fetch(self.batch_size - len(batch.messages), left)
            if not more:
                break
            batch = batch.then(parse(self.group, more))
        if batch.needs_database and self.group.linger_ms > 0:
            batch = self._linger(batch, self.group.linger_ms / 1000)
        return self._planned(batch)

    def _hand_over_empty(self, idle_since: float) -> bool:
        """Whether an empty poll goes to the event loop (IDLE_HAND_OVER_S)."""
        return (
            self.stop_requested.is_set()
            or self._closing
            or self.kafka.stranded(self.rejoin_within)
            or time.monotonic() - idle_since >= IDLE_HAND_OVER_S
        )

    def _linger(self, batch: Batch, linger: float) -> Batch:
        """Gather more for up to ``linger`` seconds after a batch first needed the database (the group's
        linger_ms), up to the batch size.

        At moderate rates events arrive one connector poll at a time, and each batch of one costs a whole
        transaction, commit and WAL flush (which wakes every walsender). Waiting a few ms merges them, for
        that much latency per hop; only groups off the latency-measured path set it. A stop ends the wait
        within one poll (at most ``linger``); the batch then goes the way of any prefetched one."""
        deadline = time.monotonic() + linger
        while len(batch.messages) < self.batch_size and not self.stop_requested.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = self.kafka.fetch(self.batch_size - len(batch.messages), left)
            if more:
                batch = batch.then(parse(self.group, more))
        return batch

    def _planned(self, batch: Batch) -> tuple[Batch, Plan | None]:
        return batch, make_plan(self.group, batch.parsed) if batch.parsed else None

    def _top_up(self, batch: Batch, plan: Plan | None) -> tuple[Batch, Plan | None]:
        """The prefetched batch and what reached the consumer's buffer since (no wait: consume(n, 0)).

        The prefetch thread hands a batch over as soon as its first record arrives (its group's linger_ms
        later if set), usually while the event loop still applies the previous one; records that arrived
        in the meantime would each start a batch of their own (a transaction, a wake-up of every thread) at
        the stack's moderate rates. Taken now they join this one, with no added latency."""
        room = self.batch_size - len(batch.messages)
        if not batch.needs_database or room <= 0:
            return batch, plan
        more = self.kafka.fetch(room, 0)
        if not more:
            return batch, plan
        return self._planned(batch.then(parse(self.group, more)))

    async def _probe_database(self) -> None:
        """SELECT 1 until the database answers, so readiness does not wait for the first event."""
        attempt = 0
        while not self.database_ok and not self.stop_requested.is_set():
            try:
                async with self.session_factory() as session:
                    await session.execute(text("SELECT 1"))
                self.database_ok = True
            except Exception as exc:
                if not is_retryable(exc):
                    log.error("group %s: database probe failed for good: %r", self.group.name, exc)
                    return
                attempt += 1
                await self._wait(backoff_delay(attempt, self.max_backoff))

    async def process(self, messages: Sequence[Message]) -> None:
        """Apply a batch of raw messages exactly once, then commit their offsets."""
        await self.apply_batch(parse(self.group, [m for m in messages if m.error() is None]))

    async def apply_batch(self, batch: Batch, plan: Plan | None = None) -> None:
        """Apply a decoded batch exactly once, retrying transient errors, then commit its offsets.

        A batch of events this group does not handle only moves the offsets: no database transaction."""
        started = time.perf_counter()
        if batch.needs_database:
            await self._apply_with_retries(batch, plan)
        for event_type, count in batch.ignored.items():
            metrics.EVENTS.labels(self.group.name, event_type, "ignored").inc(count)
        self.kafka.commit(batch.offsets)
        self._batches.inc()
        self._batch_seconds.observe(time.perf_counter() - started)

    async def _apply_with_retries(self, batch: Batch, plan: Plan | None) -> None:
        isolate = False
        attempt = 0
        contention = 0  # consecutive contention failures (CONTENTION_RETRIES_READY)
        failed_at = 0.0  # when this batch first failed: /ready's "since"
        while True:
            try:
                await self._prepare(batch)
                await self.transaction.apply(batch.parsed, batch.poison, isolate=isolate, plan=plan)
                self.database_ok = True
                self.waiting = None
                return
            except IsolateBatch:
                isolate = True
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                failed_at = failed_at or time.time()
                contention = contention + 1 if contended(exc) else 0
                dependency = waits_for(exc)
                if dependency == "database" and not contention:  # a refusal for contention is an answer
                    self.database_ok = False
                if not 0 < contention <= CONTENTION_RETRIES_READY:
                    since = self.waiting[2] if self.waiting is not None else failed_at
                    self.waiting = (dependency, redact(str(exc))[:500] or type(exc).__name__, since)
                attempt += 1
                metrics.RETRIES.labels(self.group.name, type(exc).__name__).inc()
                delay = backoff_delay(attempt, self.max_backoff)
                log.warning("group %s: transient error (%s), retry %d in %.1fs", self.group.name, exc, attempt, delay)
                await self._wait(delay)
                if self.stop_requested.is_set():
                    raise Stopped from exc

    async def _prepare(self, batch: Batch) -> None:
        """The group's ``prepare`` hooks (ConsumerGroup.prepare), with no transaction open; again on each
        retry, so what they cached is as fresh as the attempt."""
        if not self.group.prepares:
            return
        events: dict[str, list[Any]] = {}
        for item in batch.parsed:
            if item.ctx.event_type in self.group.prepares:
                events.setdefault(item.ctx.event_type, []).append(item.event)
        for event_type, of_type in events.items():
            try:
                await self.group.prepares[event_type](of_type)
            except Exception as exc:
                if is_retryable(exc):
                    raise
                log.warning(
                    "group %s: preparing %s failed (%r); its handler will meet it", self.group.name, event_type, exc
                )

    async def _wait(self, delay: float) -> None:
        """Sleep, but wake up at once when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), timeout=delay)


# What a broker that is down or restarting answers a client (librdkafka's local error codes).
_UNREACHABLE = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._RESOLVE}
)


def unreachable(exc: KafkaException) -> bool:
    """Whether a Kafka call failed because no broker answered (wait), not because of what was asked."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (error.code() in _UNREACHABLE or error.retriable())


T = TypeVar("T")


class Prefetcher(Generic[T]):
    """A thread of its own that runs ``fetch`` once per request, one request at a time, and hands its result
    to the event loop as a future.

    asyncio.to_thread did the same through the default executor: a task, a context copy, a work item, two
    chained futures and the executor's bookkeeping for every batch, 25-35 us of CPU per hand-off on uvloop
    against ~9 us for a queue and a bare future; bench.consumer_rate at 60/s (one-event batches): 1.50-1.65
    -> 1.45-1.50 ms per batch. As with to_thread, the caller asks for the next batch only after taking the
    previous one, so the consumer is never used by two threads at once, and a request still in flight at
    close is finished (the runtime awaits it), not abandoned."""

    def __init__(self, fetch: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self._fetch = fetch
        self._loop = loop
        self._requests: queue.SimpleQueue[asyncio.Future[T] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="outbox-prefetch", daemon=True)
        self._thread.start()

    def request(self) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._requests.put(future)
        return future

    def close(self) -> None:
        """Let the thread end once the request in flight, if any, is answered (the caller awaited it)."""
        self._requests.put(None)

    def _serve(self) -> None:
        while (future := self._requests.get()) is not None:
            try:
                result = self._fetch()
            except BaseException as exc:  # the awaiting caller raises it, as to_thread's did
                self._answer(future, None, exc)
            else:
                self._answer(future, result, None)

    def _answer(self, future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.done():  # cancelled while the fetch ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
