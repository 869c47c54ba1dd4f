"""Dead letters per consumer group, read from Kafka: messages in ``<group>.dlq`` and those not yet redriven.

Redrive progress is the committed offset of the group ``<group>.redrive`` on the dead-letter topic
(outbox/dlq.py), so "pending" is what lies past it (past the topic's start when nothing was redriven).

The stack exporter reads them through ``python -m infra.dead_letter_stats serve``, a child process of its
own (infra/stack_exporter.py, DeadLetterChild): librdkafka answers some broker failures with a failed
assertion, which calls abort() in one of its threads, and no Python code can catch that: the whole
process dies of SIGABRT. It killed the exporter once while the broker restarted (librdkafka #4605 and
#3663, both open: an admin request that timed out on our side is still in flight, and its late or
dropped answer releases the request's reference twice, ``Assertion `eonce->refcnt > 0' failed``). Here
an admin request is given librdkafka's own timeout (it was 60 s, socket.timeout.ms, behind our 3 s wait)
and the clients are made anew after any failure, the issues' workaround; what still aborts takes only
the child with it.

While the broker is away, librdkafka logs every failed connection attempt (~20 lines a second from the two
clients, each line made anew with its clients after every failed count). Its lines come through
``LibrdkafkaLogs`` (the clients' ``logger``, served by ``poll`` after each count): connection failures as one
outage (infra/outages.py: its start, a line per 5 minutes, its end), everything else as it was; the
exporter's ``commerce_exporter_source_up{source="kafka"}`` shows the outage meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import astuple, dataclass
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.outages import OutageLog
from outbox.config import kafka_bootstrap
from outbox.redaction import configure_logging

log = logging.getLogger("infra.dead_letter_stats")

SUFFIX = ".dlq"
TIMEOUT_S = 3.0


@dataclass(frozen=True)
class DeadLetterCount:
    group: str
    total: int
    pending: int


class LibrdkafkaLogs:
    """The clients' ``logger``: confluent-kafka calls ``log(level, "%s [%s] %s", facility, client, message)``
    for each librdkafka line. A broker connection failure (facility FAIL: refused, timed out, dropped) is one
    more failure of the broker's outage; any other line is logged as it comes."""

    def __init__(self, outage: OutageLog) -> None:
        self.outage = outage

    def log(self, level: int, fmt: str, *args: Any, **kwargs: Any) -> None:
        if args and args[0] == "FAIL":
            self.outage.failed(f"librdkafka: {fmt % args}")
        else:
            log.log(level, fmt, *args, **kwargs)


broker = OutageLog(log, "Kafka unreachable for the dead-letter counts")
_librdkafka_logs = LibrdkafkaLogs(broker)
# The broker closing an idle connection is routine, not worth a line.
_LOGGING: dict[str, Any] = {"logger": _librdkafka_logs, "log.connection.close": False}

_clients: tuple[AdminClient, Consumer] | None = None
# ListOffsets "timestamps" that stand for the first and the next offset of a partition
EARLIEST, LATEST = -2, -1


def _kafka() -> tuple[AdminClient, Consumer]:
    global _clients
    if _clients is None:
        bootstrap = kafka_bootstrap()
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "stack-exporter", "enable.auto.commit": False, **_LOGGING}
        )
        _clients = (AdminClient({"bootstrap.servers": bootstrap, **_LOGGING}), consumer)
    return _clients


def pending_count(watermarks: dict[int, tuple[int, int]], committed: dict[int, int]) -> tuple[int, int]:
    """(total, pending) over partitions: watermarks {partition: (low, high)}, committed {partition: offset};
    a partition without a commit (negative offset) is pending from its low watermark."""
    total = pending = 0
    for partition, (low, high) in watermarks.items():
        total += high - low
        done = committed.get(partition, -1)
        pending += high - max(low, done if done >= 0 else low)
    return total, pending


def read() -> list[DeadLetterCount]:
    """The counts; after any failure (the broker restarting) the clients are dropped, and the next read
    makes new ones rather than reusing handles with requests of the failure still in flight."""
    global _clients
    try:
        counts = _read()
    except BaseException:
        if _clients is not None:
            _serve_logs(_clients)
            with contextlib.suppress(Exception):  # a consumer that never subscribed: nothing to leave
                _clients[1].close()
            _clients = None
        raise
    if _clients is not None:
        _serve_logs(_clients)
    broker.recovered()
    return counts


def _serve_logs(clients: tuple[AdminClient, Consumer]) -> None:
    """Hand the lines librdkafka queued since the last count to LibrdkafkaLogs (only poll serves them)."""
    for client in clients:
        with contextlib.suppress(Exception):
            client.poll(0)


def _read() -> list[DeadLetterCount]:
    """Both watermarks of every dead-letter partition in two requests, the redrive group's offsets only
    where a topic holds letters: asked per partition and per group, the ~100 mostly empty dead-letter
    topics a test run leaves cost the broker ~40 requests/s from this alone."""
    admin, consumer = _kafka()
    topics = admin.list_topics(timeout=TIMEOUT_S).topics
    names = sorted(name for name in topics if name.endswith(SUFFIX))
    partitions = [TopicPartition(name, p) for name in names for p in topics[name].partitions]
    low = _offsets(consumer, partitions, EARLIEST)
    high = _offsets(consumer, partitions, LATEST)
    counts = []
    for topic in names:
        group = topic.removesuffix(SUFFIX)
        watermarks = {p: (low[(topic, p)], high[(topic, p)]) for p in topics[topic].partitions}
        holds_letters = any(h > lo for lo, h in watermarks.values())
        committed = _committed(admin, f"{group}.redrive", topic) if holds_letters else {}
        counts.append(DeadLetterCount(group, *pending_count(watermarks, committed)))
    return counts


def _offsets(consumer: Consumer, partitions: list[TopicPartition], which: int) -> dict[tuple[str, int], int]:
    """One ListOffsets request for all partitions, through the consumer like the per-partition watermark
    calls before it. Not the admin client's list_offsets: the exporter aborted once on a librdkafka
    assertion in an admin request while the broker restarted (librdkafka #3663 reports it for
    ListConsumerGroupOffsets, which is why that is now asked only where letters wait)."""
    if not partitions:
        return {}
    found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, which) for tp in partitions], TIMEOUT_S)
    failed = [tp for tp in found if tp.error is not None]
    if failed:
        raise KafkaException(failed[0].error)
    return {(tp.topic, tp.partition): tp.offset for tp in found}


def _committed(admin: AdminClient, group: str, topic: str) -> dict[int, int]:
    # librdkafka ends the request itself at TIMEOUT_S: one left running past our wait is the one whose late
    # answer trips the assertion (see the module's doc).
    request = [ConsumerGroupTopicPartitions(group)]
    future = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group]
    try:
        result = future.result(timeout=TIMEOUT_S + 1)
    except Exception:  # the group never committed: nothing redriven yet
        return {}
    return {tp.partition: tp.offset for tp in result.topic_partitions or [] if tp.topic == topic}


def serve() -> None:
    """The stack exporter's child: a line on stdin asks for the counts, one JSON line answers them
    (``{"counts": [[group, total, pending], ...]}`` or ``{"error": "..."}``); stdin's end ends it. Its log
    lines go to stderr, which is the exporter's."""
    configure_logging()
    for _ in sys.stdin:
        try:
            answer: dict[str, object] = {"counts": [astuple(count) for count in read()]}
        except Exception as exc:  # the broker restarting: the exporter keeps its last counts
            answer = {"error": repr(exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
