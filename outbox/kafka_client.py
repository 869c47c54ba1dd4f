"""The runtime's Kafka side: consumer and producer set-up, polling, offset commits, lag, assignment.

Every call here blocks (librdkafka); the runtime runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from outbox import dead_letters, metrics
from outbox.topics import ensure_topics

log = logging.getLogger("outbox.runtime")

# A member that stops heartbeating (a crash) is declared dead after this long, and only then do its
# partitions move: with Kafka's default of 45 s a consumer restarted after SIGKILL applied nothing for
# ~45 s. 6 s is the broker's minimum (group.min.session.timeout.ms); heartbeats come from librdkafka's
# own thread, so a busy Python loop does not miss them.
SESSION_TIMEOUT_MS = 6_000
# Offsets go to Kafka at most this often per consumer (see KafkaSide.commit_due). Each commit cost the broker
# ~2 ms of CPU and the consumer ~0.4 (session 29: a scratch group committing six partitions 20 times a second,
# alternated with idle windows), and under load every group with new offsets commits at this interval: at 1 s
# that was ~7 commits a second, ~0.1 ms per order at 150/s. A longer interval costs only redelivery after a
# crash (up to this much of a group's events, which the inbox skips); a clean stop or a revocation commits.
COMMIT_INTERVAL_S = 5.0
# How long the broker holds a fetch that finds nothing new. With fetch.min.bytes=1 it answers the moment a
# record arrives (idle produce -> consume stayed under 3 ms at 500 and at 1000), so it only sets how often
# an idle consumer asks again: at 100 ms the ~10 consumer processes sent ~80 empty fetches/s, the largest
# part of an idle broker's CPU; 10 idle consumers cost a scratch broker 44-107 ms/s at 500, 18-25 at 1000.
# The price: right after an assignment the first record may wait this long (576 -> ~1,070 ms measured).
FETCH_WAIT_MAX_MS = 1000
# What a group with ConsumerGroup.fetch_wait_ms asks the broker to gather before it answers a fetch: more than
# such a wait gathers at the stack's rates (~0.7 kB per event), so the wait is what ends a fetch; a backlog (a
# restart, a replay) is there already and is answered at once.
GATHER_MIN_BYTES = 1 << 20
# A member whose session timed out loses its partitions and librdkafka rejoins on the next poll; after a
# broker restart under load it once stayed out for good (no assignment for 12 minutes, nothing logged), on
# two consumers at once. A normal rejoin took up to ~21 s here: past this, the runtime starts over.
REJOIN_WITHIN_S = 60.0
# A rebalance waits this long for a member that does not rejoin (librdkafka sends it as the JoinGroup's rebalance
# timeout). In session 30's soak a group reloaded after a broker restart kept a member whose process had died and
# waited for it the whole default 300 s with no partition owned (warehouse-reservations 16:46:46 -> 16:51:46; a
# rebalance for its restarted consumer was pending when the broker was killed): 4,288 orders were cancelled at
# the reservation's 120-s deadline meanwhile. Not reproduced on a scratch broker with a member killed just before
# its broker (expired by its 6-s session after the reload, 5.8 s with either value); whatever leaves such a member
# in a group, this bounds the wait. It is also how long the runtime may go without polling, which it does only
# while a batch is retried (the database or a dependency away): past it the member leaves the group and rejoins
# at its next poll, and the inbox skips whatever is read again.
MAX_POLL_INTERVAL_MS = 30_000
# Why a member owns no partition (KafkaSide.unassigned, /ready's "error"). A lost session is the group
# coordinator not answering heartbeats for SESSION_TIMEOUT_MS: the broker that hosts the group's
# __consumer_offsets partition is away, or its coordinator failed (docs/decisions.md, "Consumers while their
# group's coordinator is away"). librdkafka rejoins by itself once the coordinator answers again.
JOINING = "joining the group: no partition assigned yet"
# How long a close (a stop, or a stranded member starting over) waits for Kafka. Its offset commit and its leave
# go through the group coordinator, and librdkafka waits for one that does not answer for as long as it does not:
# on a scratch cluster whose coordinator's broker stopped answering (SIGSTOP), a stop 3 s into the outage
# returned only when the broker came back, 117+ s later, and a stranded member's rejoin stood 56 s (docs/
# decisions.md, "Consumers while their group's coordinator is away"). Past this the consumer is left to finish
# in the background: what it had not committed is read again and the inbox skips it. A close that Kafka answers
# takes ~1 s, a flush of dead letters at most 10 more; `just stop` kills a process after 30 s.
CLOSE_WITHIN_S = 15.0
SESSION_LOST = "the group's session was lost (its coordinator did not answer heartbeats); rejoining"


def consumer_config(
    group: str,
    bootstrap: str,
    *,
    instance_id: str | None = None,
    fetch_wait_ms: int = 0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka's settings for a group's consumer; ``fetch_wait_ms`` (ConsumerGroup.fetch_wait_ms), if set,
    lets the broker hold each fetch that long to gather more."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        # The broker's request log and metrics name the group, not librdkafka's default "rdkafka" for all.
        "client.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 4,
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        "topic.metadata.refresh.interval.ms": 10000,
    }
    if instance_id:
        config["group.instance.id"] = instance_id
    if fetch_wait_ms:
        config["fetch.min.bytes"] = GATHER_MIN_BYTES
        config["fetch.wait.max.ms"] = fetch_wait_ms
    return {**config, **(overrides or {})}


class KafkaSide:
    """One consumer (the group's subscription) and one idempotent producer (its dead letters)."""

    def __init__(
        self,
        group: str,
        topics: list[str],
        bootstrap: str,
        *,
        instance_id: str | None = None,
        fetch_wait_ms: int = 0,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.group = group
        self.topics = topics
        self.bootstrap = bootstrap
        self.config = consumer_config(
            group, bootstrap, instance_id=instance_id, fetch_wait_ms=fetch_wait_ms, overrides=overrides
        )
        # Partitions this member owns now: assigned and not yet revoked or lost.
        self.owned: set[tuple[str, int]] = set()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        # The next offset applied on each partition this member owns. Only owned ones: the broker takes an
        # offset commit from any member of the group's generation, whoever owns the partition, so an offset
        # kept after a revocation and sent again with the others (every commit_due, the close) moved the next
        # owner's committed offset back (a scratch topic: 15 -> 10), and whoever read the partition next
        # re-read that stretch (the inbox skips it; poison in it was dead-lettered again).
        self._offsets: dict[tuple[str, int], int] = {}
        # The rebalance callbacks run in the thread that polls (the runtime's prefetch thread), commit() in the
        # event loop's: a batch applied while its partition was being revoked must not put its offset back.
        self._offsets_lock = threading.Lock()
        self._pending = False  # offsets applied and not sent to Kafka yet
        self._last_commit = 0.0
        self._last_lag_check = 0.0
        self._lost_at: float | None = None  # when the session timed out and no assignment has come since
        # Why this member owns no partition and since when (wall clock), for /ready: set at the subscription
        # and when the session is lost, cleared by an assignment. None while assigned, or after an assignment
        # that gave this member nothing (more members than partitions: nothing is wrong).
        self.unassigned: tuple[str, float] | None = None
        self._partitions = metrics.PARTITIONS.labels(group)

    @property
    def consumer(self) -> Consumer:
        assert self._consumer is not None, "KafkaSide.open() first"
        return self._consumer

    def open(self) -> None:
        ensure_topics(self.bootstrap, [*self.topics, dead_letters.dead_letter_topic(self.group)])
        self._consumer = Consumer(self.config)
        self._producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "client.id": f"{self.group}-dead-letters",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        self._consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
        self.unassigned = self.unassigned or (JOINING, time.time())  # a rejoin after a lost session keeps its reason
        log.info("group %s subscribed to %s", self.group, ", ".join(self.topics))

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:  # a consumer given up on (close) that finished later
            return
        with self._offsets_lock:
            self.owned |= {(tp.topic, tp.partition) for tp in partitions}
        self._lost_at = self.unassigned = None
        self._partitions.set(len(self.owned))
        log.info("group %s: assigned %s", self.group, _names(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        with self._offsets_lock:
            self.owned -= revoked
            applied = [TopicPartition(t, p, self._offsets.pop((t, p))) for t, p in revoked if (t, p) in self._offsets]
        self._partitions.set(len(self.owned))
        if applied:  # what was applied of them and not committed yet: the next owner starts after it
            with contextlib.suppress(Exception):  # failed: the next owner re-reads them, the inbox dedupes
                consumer.commit(offsets=applied, asynchronous=False)
        log.info("group %s: revoked %s", self.group, _names(partitions))

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        lost = {(tp.topic, tp.partition) for tp in partitions}
        with self._offsets_lock:  # not committed: another member may own them already
            self.owned -= lost
            for key in lost:
                self._offsets.pop(key, None)
        self._partitions.set(len(self.owned))
        if not self.owned:
            self._lost_at = time.monotonic()
            self.unassigned = (SESSION_LOST, time.time())
        log.info("group %s: lost %s", self.group, _names(partitions))

    def stranded(self, within: float = REJOIN_WITHIN_S) -> bool:
        """Lost every partition (a session timeout) and given none back for ``within`` seconds."""
        return self._lost_at is not None and not self.owned and time.monotonic() - self._lost_at >= within

    def leave(self) -> None:
        """Leave the group (committing what was applied) to start over with a new consumer and producer:
        `open()` next, which the runtime retries while the broker is unreachable. What was applied and not
        committed is redelivered; the inbox dedupes it."""
        log.warning("group %s: no partitions since the session was lost; rejoining with a new consumer", self.group)
        self.close()
        self._consumer = self._producer = None  # a close given up on finishes unheard (the callbacks ignore it)
        self._offsets.clear()
        self._pending, self._lost_at = False, None

    def fetch(self, batch_size: int, timeout: float) -> list[Message]:
        # Wait for the first record, then take only what is already buffered: consume(n, timeout) would
        # otherwise hold a lone event until n arrive or the timeout passes (latency, not throughput).
        # Under load the buffer fills while a batch is applied, so batches grow by themselves.
        first = self.consumer.consume(1, timeout)
        rest = self.consumer.consume(batch_size - 1, 0) if first and batch_size > 1 else []
        return [m for m in first + rest if self._usable(m)]

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():  # e.g. fenced by another process with our group.instance.id: stop, loudly
            raise KafkaException(error)
        if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
            log.warning("group %s: kafka error %s", self.group, error)
        return False

    def send_dead_letters(self, letters: Sequence[dead_letters.DeadLetterOrigin]) -> None:
        assert self._producer is not None
        dead_letters.produce(self._producer, self.group, letters)

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Note a batch's next offsets (decoding.next_offsets) as applied; the polling thread sends them
        (commit_due) at most every COMMIT_INTERVAL_S. Those of partitions revoked meanwhile are not kept: their
        next owner reads on from what the revocation committed (the inbox skips what this batch applied)."""
        with self._offsets_lock:
            for key, offset in offsets.items():
                if key in self.owned and self._offsets.get(key, -1) < offset:
                    self._offsets[key] = offset
        self._pending = True

    def commit_due(self) -> None:
        """Send the applied offsets if some are pending and the last commit is COMMIT_INTERVAL_S old.

        An offset commit costs the broker ~2 ms of CPU (COMMIT_INTERVAL_S); at a few events per batch, one per
        batch per group was a large part of Kafka's CPU per order. Asynchronous and throttled: the database
        already holds the truth (the inbox), so a commit lost or not yet sent only means a harmless
        redelivery. The runtime's polling thread calls this before every poll (at least every poll timeout;
        never from another thread while one polls: librdkafka made such a commit wait for the polls); every
        partition's latest offset is committed synchronously on close and, for revoked partitions, on
        revocation.
        """
        now = time.monotonic()
        if not self._pending or now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._pending, self._last_commit = False, now
        offsets = self._offset_list()
        if not offsets:  # all of them revoked since
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # a rebalance took the partitions; the next owner re-reads (inbox dedupes)
            log.warning("group %s: offset commit failed: %s", self.group, exc)

    def _offset_list(self) -> list[TopicPartition]:
        with self._offsets_lock:  # a revocation in the polling thread may be dropping some
            return [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._offsets.items()]

    def report_lag(self, every: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_lag_check < every or self._consumer is None:
            return
        self._last_lag_check = now
        for tp in self._consumer.position(self._consumer.assignment()):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                metrics.LAG.labels(self.group, tp.topic, str(tp.partition)).set(high - tp.offset)

    def close(self) -> None:
        """Commit what was applied, flush dead letters, and leave the group (a replay may start at once); in a
        thread of its own, given up on after CLOSE_WITHIN_S."""
        consumer, producer = self._consumer, self._producer
        offsets = self._offset_list() if consumer is not None and self._offsets else []

        def finish() -> None:
            if consumer is not None and offsets:
                with contextlib.suppress(Exception):
                    consumer.commit(offsets=offsets, asynchronous=False)
            if producer is not None:
                producer.flush(10)
            if consumer is not None:
                consumer.close()

        closing = threading.Thread(target=finish, name="outbox-close", daemon=True)
        closing.start()
        closing.join(CLOSE_WITHIN_S)
        self.owned.clear()
        self._partitions.set(0)
        if closing.is_alive():
            log.warning(
                "group %s: Kafka did not answer the close within %.0f s (its group coordinator away?); "
                "what was not committed is read again (the inbox skips it)",
                self.group,
                CLOSE_WITHIN_S,
            )
        else:
            log.info("group %s closed", self.group)


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
