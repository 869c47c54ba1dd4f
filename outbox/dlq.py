"""Dead letters of a consumer group: list them, and redrive them to their event type's topic.

    python -m outbox.dlq list customer-stats [--pending]
    python -m outbox.dlq redrive customer-stats [--event-id ID ...]
    python -m outbox.dlq ack customer-stats [--event-id ID ...]
    python -m outbox.dlq ack customer-stats --done

A redriven message is produced again, with its original key, value and headers, to the topic it came from,
or to its stream's topic if a stream (outbox.routing) moved its event type off its aggregate's topic since:
the group no longer reads the old one. The group's inbox lets a dead-lettered event id be applied once it
comes back. Redrive progress is the committed offset of the group `<group>.redrive` on the dead-letter
topic, so each dead letter is redriven once; `list` marks each letter `pending` (past that offset: what the
DeadLettersPending alert counts) or `done`. `ack` moves that offset to the end without sending anything:
for letters that can never apply (a test's poison, an event of a type nobody handles any more), after
reading them with `list`. With `--event-id`, `redrive` and `ack` move the offset only over those events'
letters, and stop at the first other pending one, which stays pending with everything after it (the
progress is one offset per partition, so marking a letter past someone else's would mark theirs handled
too). The messages stay in the topic either way. `ack` also records the letters' events as acknowledged in
the group's inbox (outbox.inbox.ACKNOWLEDGED), so a replay reading them again neither applies nor
dead-letters them; `ack --done` records those of the letters already done (handled before that existed).
Both record only events whose record the group has read since its offsets last moved back: in the middle
of a replay, an event not yet read again is left for the re-read (it may apply now).

A group whose dead-letter topic does not exist never ran here (every group's runtime creates it when it
starts): each command exits 2 naming the project's groups, so a misspelt name is not read as "0 pending".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from outbox import dead_letters as dl
from outbox import groups, inbox
from outbox.config import kafka_bootstrap
from outbox.consumer import ConsumerGroup
from outbox.dead_letters import REDRIVE_HEADER, dead_letter_topic
from outbox.decoding import raw_headers
from outbox.groups import consumer_modules
from outbox.redaction import redact
from outbox.routing import topic_for_event

# What a redrive may send: the broker's default limit (message.max.bytes), which a record that came in had met.
_MAX_RECORD = 1_048_588


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    headers: dict[str, str]

    @property
    def topic(self) -> str:
        """Where a redrive sends it: where it came from, unless that was its aggregate's topic and its event
        type is routed elsewhere now (a test's or a benchmark's own topic stays what it was)."""
        original = self.headers[dl.ORIGINAL_TOPIC]
        event_type = self.headers.get("event_type")
        if event_type and original == topic_for_event(event_type, streams=()):
            return topic_for_event(event_type)
        return original

    @property
    def event_id(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.headers["id"])
        except (KeyError, ValueError):
            return None

    @property
    def original_headers(self) -> list[tuple[str, str | bytes | None]]:
        return _record_headers(self.message)

    @property
    def omitted(self) -> int | None:
        """The bytes of its record a letter was sent without (too large for Kafka with the dlq.* headers)."""
        value = self.headers.get(dl.OMITTED)
        return int(value) if value else None

    def record(
        self, bootstrap: str | None = None
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]:
        """The failed record's key, value and headers: the letter's own, or for a letter sent without them,
        the original's, read back from where it was consumed."""
        if self.omitted is None:
            return self.message.key(), self.message.value(), self.original_headers
        topic, partition = self.headers[dl.ORIGINAL_TOPIC], int(self.headers[dl.ORIGINAL_PARTITION])
        offset = int(self.headers[dl.ORIGINAL_OFFSET])
        consumer = Consumer(
            {"bootstrap.servers": bootstrap or kafka_bootstrap(), "group.id": "dlq-record", "enable.auto.commit": False}
        )
        try:
            consumer.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None and message.offset() == offset:
                    return message.key(), message.value(), _record_headers(message)
        finally:
            consumer.close()
        raise SystemExit(
            f"redrive: the record of letter {self.headers.get('id', '?')} is gone from {topic}[{partition}]@{offset}"
        )


def _record_headers(message: Message) -> list[tuple[str, str | bytes | None]]:
    """A record's headers without those a dead letter or a redrive added."""
    return [(k, v) for k, v in raw_headers(message) if not dl.is_dead_letter_header(k)]


def read(group: str, *, from_start: bool, bootstrap: str | None = None) -> Iterator[tuple[Consumer, DeadLetter]]:
    """Yield the dead letters; from the start, or from where the last redrive stopped."""
    topic = dead_letter_topic(group)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap or kafka_bootstrap(),
            "group.id": f"{group}.redrive",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            # The broker holds a fetch that finds nothing up to this long; the read ends at the end of
            # each partition, so the default 500 ms would be the cost of every `list`.
            "fetch.wait.max.ms": 20,
        }
    )
    try:
        partitions = _partitions(consumer, topic)
        if not partitions:
            return
        if from_start:
            partitions = [TopicPartition(topic, p.partition, 0) for p in partitions]
        else:
            committed = consumer.committed(partitions, timeout=10)
            partitions = [TopicPartition(topic, p.partition, p.offset if p.offset >= 0 else 0) for p in committed]
        consumer.assign(partitions)
        remaining = {p.partition for p in partitions}
        quiet_since = time.monotonic()
        while remaining:
            # consume() waits its whole timeout unless 500 messages come: short waits, so the end of every
            # partition (its EOF event) ends the read at once; 2 s without anything ends it too.
            messages = consumer.consume(500, 0.1)
            if not messages:
                if time.monotonic() - quiet_since > 2.0:
                    break
                continue
            quiet_since = time.monotonic()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == -191:  # _PARTITION_EOF
                        remaining.discard(message.partition() or 0)
                    continue
                headers = {k: (v or b"").decode("utf-8", "replace") for k, v in raw_headers(message)}
                yield consumer, DeadLetter(message, headers)
    finally:
        consumer.close()


def _redrive_consumer(group: str, bootstrap: str | None = None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap or kafka_bootstrap(),
            "group.id": f"{group}.redrive",
            "enable.auto.commit": False,
        }
    )


def _partitions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return []
    return [TopicPartition(topic, p) for p in metadata.partitions]


def redriven_up_to(group: str, bootstrap: str | None = None) -> dict[int, int]:
    """Per partition of the dead-letter topic, the first offset not yet redriven or acknowledged."""
    consumer = _redrive_consumer(group, bootstrap)
    try:
        partitions = _partitions(consumer, dead_letter_topic(group))
        committed = consumer.committed(partitions, timeout=10) if partitions else []
        return {tp.partition: max(tp.offset, 0) for tp in committed}
    finally:
        consumer.close()


def _one_line(text: str, limit: int = 160) -> str:
    # A database error carries its statement after the message ("[SQL: ..."): the message is what tells
    # letters apart, and one letter is one line.
    # Redacted again: a letter written before its error was redacted at the source (outbox.decoding).
    return " ".join(redact(text).split("[SQL:", 1)[0].split())[:limit]


def list_dead_letters(group: str, *, pending_only: bool = False, bootstrap: str | None = None) -> int:
    """Print the dead letters (or only those not yet redriven); return how many are pending."""
    done_up_to = redriven_up_to(group, bootstrap)
    count = pending = 0
    for _, letter in read(group, from_start=True, bootstrap=bootstrap):
        h = letter.headers
        offset = letter.message.offset() or 0
        is_pending = offset >= done_up_to.get(letter.message.partition() or 0, 0)
        count += 1
        pending += is_pending
        if pending_only and not is_pending:
            continue
        print(
            f"{letter.message.partition()}:{offset}  {'pending' if is_pending else 'done':<7}  "
            f"{h.get('event_type', '?'):<24} id={h.get('id', '?')}  "
            f"from {h.get(dl.ORIGINAL_TOPIC)}@{h.get(dl.ORIGINAL_OFFSET)}  "
            f"{h.get(dl.ERROR_TYPE)}: {_one_line(h.get(dl.ERROR, ''))}"
            + (f"  (record of {letter.omitted:,} bytes left at its origin)" if letter.omitted is not None else "")
        )
    print(
        f"{count} dead letters in {dead_letter_topic(group)}, {pending} pending "
        f"(not yet redriven or acknowledged: `redrive` sends them back, `ack` marks them handled without sending them)"
    )
    return pending


def acknowledge(
    group: str,
    event_ids: set[uuid.UUID] | None = None,
    bootstrap: str | None = None,
    *,
    database_url: str | None = None,
) -> int:
    """Mark every pending dead letter (or only those of the given events) as handled without sending it back;
    return how many. Their events are recorded as acknowledged in the group's inbox first (``database_url``,
    or the project group's own database; none for a group the project does not define): a replay that reads
    them again then neither applies nor dead-letters them (outbox.inbox.ACKNOWLEDGED)."""
    marked: list[DeadLetter] = []
    ends: dict[int, int] = {}
    blocked: set[int] = set()
    for _, letter in read(group, from_start=False, bootstrap=bootstrap):
        partition = letter.message.partition() or 0
        if partition in blocked:
            continue
        if event_ids is None or letter.event_id in event_ids:
            ends[partition] = (letter.message.offset() or 0) + 1
            marked.append(letter)
        else:
            blocked.add(partition)
    recorded = _record_acknowledged(group, marked, database_url, bootstrap)
    _commit(group, ends, bootstrap)
    print(f"acknowledged {len(marked)} dead letters of {group} without redriving them{_blocked_note(sorted(blocked))}")
    if recorded:
        print(
            f"{recorded} of their events recorded as acknowledged in {group}'s inbox: not dead-lettered when read again"
        )
    return len(marked)


def record_done(group: str, bootstrap: str | None = None, *, database_url: str | None = None) -> int:
    """Record the events of the letters already done (acknowledged or redriven, before acknowledgements
    were recorded: session 31) as acknowledged in the group's inbox, moving nothing; how many were written.
    A done letter whose event applied since (a redrive) keeps its applied row."""
    done_up_to = redriven_up_to(group, bootstrap)
    done = [
        letter
        for _, letter in read(group, from_start=True, bootstrap=bootstrap)
        if (letter.message.offset() or 0) < done_up_to.get(letter.message.partition() or 0, 0)
    ]
    recorded = _record_acknowledged(group, done, database_url, bootstrap)
    print(f"{len(done)} done dead letters of {group}; {recorded} of their events recorded as acknowledged")
    return recorded


class OffsetsMoved(RuntimeError):
    """The group's offsets moved back (a replay's reset) while acknowledgements were being written."""


def _record_acknowledged(
    group: str, letters: list[DeadLetter], database_url: str | None, bootstrap: str | None = None
) -> int:
    """Write the letters' events (those with an id) as acknowledged in the group's inbox; how many.

    Only events whose record the group has read since its offsets last moved back (its committed offset
    on the record's partition is past it): such an event has the outcome of that read in the inbox
    (applied, which is never overwritten, or dead-lettered again). A replay's rebuild forgets what was
    applied and moves the offsets back; between that and the re-read, an event that now applies (a fix
    since, or a redrive had applied it) has no row, and recording it acknowledged skipped it for good
    (W, session 31). Those are left for the re-read to decide, and said. The offsets are read again
    inside the transaction after the writes: a reset meanwhile rolls it back (a rebuild resets before it
    commits, and its inbox delete and these writes wait on each other's rows)."""
    rows = [row for letter in letters if (row := _acknowledged_row(letter)) is not None]
    url = database_url or _database_of(group)
    if url is None or not rows:
        return 0
    try:
        read = asyncio.run(_write_acknowledged(url, group, rows, lambda: _read_up_to(group, rows, bootstrap)))
    except OffsetsMoved as exc:
        raise SystemExit(f"{exc}: nothing recorded; run it again once the group has caught up") from exc
    if len(read) < len(rows):
        print(
            f"{len(rows) - len(read)} of the letters' events not recorded: {group} has not read their records since "
            "its offsets were moved back (a replay in progress): the re-read applies them or dead-letters them "
            "again; run this again once the group has caught up (`just replay ... --follow` or its lag)"
        )
    return len(read)


def _read_up_to(group: str, rows: list[inbox.Acknowledged], bootstrap: str | None) -> dict[tuple[str, int], int]:
    """The group's committed offset on each partition these events came from (-1: none)."""
    wanted = sorted({(row.topic, row.partition) for row in rows if row.topic != "?"})  # "?": no origin header
    consumer = Consumer(
        {"bootstrap.servers": bootstrap or kafka_bootstrap(), "group.id": group, "enable.auto.commit": False}
    )
    try:  # committed() asks the group's coordinator; the consumer never joins the group
        committed = consumer.committed([TopicPartition(t, p) for t, p in wanted], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in committed}


def _since_reset(rows: list[inbox.Acknowledged], up_to: dict[tuple[str, int], int]) -> list[inbox.Acknowledged]:
    return [row for row in rows if up_to.get((row.topic, row.partition), -1) > row.offset]


def _acknowledged_row(letter: DeadLetter) -> inbox.Acknowledged | None:
    h = letter.headers
    try:
        partition, offset = int(h[dl.ORIGINAL_PARTITION]), int(h[dl.ORIGINAL_OFFSET])
    except (KeyError, ValueError):
        return None
    if letter.event_id is None:
        return None  # nothing to know it by when it comes again: it is dead-lettered again
    return inbox.Acknowledged(
        letter.event_id, h.get("event_type", "?"), h.get(dl.ORIGINAL_TOPIC, "?"), partition, offset
    )


def _database_of(group: str) -> str | None:
    """The project group's database; None for a group the project does not define (a test's own)."""
    for module in consumer_modules():
        defined = getattr(module, "group", None)
        if isinstance(defined, ConsumerGroup) and defined.name == group:
            return groups.database_url(module)
    return None


async def _write_acknowledged(
    url: str, group: str, rows: list[inbox.Acknowledged], up_to: Callable[[], dict[tuple[str, int], int]]
) -> list[inbox.Acknowledged]:
    """Record the rows the group has read since its last reset (``up_to``: its committed offsets), in one
    transaction that rolls back if the offsets moved back meanwhile; the rows recorded."""
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session, session.begin():
            read = _since_reset(rows, await asyncio.to_thread(up_to))
            await inbox.record_acknowledged(session, group, read)
            if len(_since_reset(read, await asyncio.to_thread(up_to))) < len(read):
                raise OffsetsMoved(f"the offsets of {group} moved back meanwhile (a replay started?)")
        return read
    finally:
        await engine.dispose()


def _commit(group: str, ends: dict[int, int], bootstrap: str | None) -> None:
    """Move the redrive progress of these partitions to these offsets (nothing if none)."""
    if not ends:
        return
    consumer = _redrive_consumer(group, bootstrap)
    try:
        topic = dead_letter_topic(group)
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False)
    finally:
        consumer.close()


def _blocked_note(blocked: list[int]) -> str:
    return f" (stopped at another event's pending letter in partitions {blocked})" if blocked else ""


class _LetterSender:
    """Sends dead letters back to their topics one at a time, each acknowledged by the broker before the next
    (so a letter is marked done only once it is back), marked as a redrive of ``group``."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap, self.group = bootstrap, group
        # The record of a letter that refers to it may be up to the broker's limit, above the producer's default.
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "message.max.bytes": _MAX_RECORD,
            }
        )
        self.failures: list[KafkaError] = []

    def _refused(self, error: KafkaError | None, _: Message) -> None:
        if error is not None:
            self.failures.append(error)

    def send(self, letter: DeadLetter, where: str) -> None:
        key, value, headers = letter.record(self.bootstrap)
        self.producer.produce(
            letter.topic,
            key=key,
            value=value,
            headers=[*headers, (REDRIVE_HEADER, self.group)],
            on_delivery=self._refused,
        )
        if self.producer.flush(30) or self.failures:
            # flush() counts only what is still queued: a record the broker refused is reported to the callback.
            why = f"refused it: {self.failures[0]}" if self.failures else "did not acknowledge it"
            raise SystemExit(f"redrive: Kafka {why}; letter {where} and the rest not marked done")


def redrive(group: str, event_ids: set[uuid.UUID] | None = None) -> int:
    """Produce dead letters (all not yet redriven, or only the given event ids) back to their topics, and mark
    them done (those of the given events up to the first other pending letter in their partition).

    The letters marked done are those this read sent, never a second read's: a redriven event that fails
    again dead-letters a new letter of the same id right behind the one sent, and marking that one done
    would drop it unsent."""
    bootstrap = kafka_bootstrap()
    sender = _LetterSender(bootstrap, group)
    sent = 0
    last: dict[int, int] = {}
    # By event id: per partition, the end of the run of sent letters from the progress on, and where
    # another event's letter ended that run.
    ends: dict[int, int] = {}
    blocked: set[int] = set()
    marked = 0
    consumer: Consumer | None = None
    for consumer, letter in read(group, from_start=False):
        partition, offset = letter.message.partition() or 0, letter.message.offset() or 0
        last[partition] = offset
        if event_ids is not None and letter.event_id not in event_ids:
            blocked.add(partition)
            continue
        sender.send(letter, f"{partition}:{offset}")
        sent += 1
        if event_ids is None:
            consumer.commit(
                offsets=[TopicPartition(dead_letter_topic(group), p, o + 1) for p, o in last.items()],
                asynchronous=False,
            )
        elif partition not in blocked:
            ends[partition] = offset + 1
            marked += 1
    if event_ids is not None and sent:
        _commit(group, ends, None)
        print(f"redrove {sent} dead letters of {group}; {marked} marked done{_blocked_note(sorted(blocked))}")
    else:
        print(f"redrove {sent} dead letters of {group}")
    return sent


def dead_letter_topic_exists(group: str, bootstrap: str | None = None) -> bool:
    """Whether ``<group>.dlq`` exists (a metadata request: it creates nothing)."""
    consumer = _redrive_consumer(group, bootstrap)
    try:
        return bool(_partitions(consumer, dead_letter_topic(group)))
    finally:
        consumer.close()


def _project_groups() -> str:
    """The groups the project defines, for the error message only (it imports every consumer module)."""
    try:
        modules = consumer_modules()
    except Exception as exc:  # a hint in an error message: the error stands without it
        return f"(could not list them: {type(exc).__name__})"
    names = sorted(m.group.name for m in modules if isinstance(getattr(m, "group", None), ConsumerGroup))
    return ", ".join(names) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    list_parser = sub.add_parser("list", help="print every dead letter of a group, pending or done")
    list_parser.add_argument("group")
    list_parser.add_argument("--pending", action="store_true", help="only those not yet redriven or acknowledged")
    ack_parser = sub.add_parser("ack", help="mark the pending dead letters handled without sending them back")
    ack_parser.add_argument("group")
    ack_parser.add_argument(
        "--event-id", action="append", type=uuid.UUID, help="only these events' letters, up to another pending one"
    )
    ack_parser.add_argument(
        "--done",
        action="store_true",
        help="instead: record the events of the letters already done as acknowledged (letters handled before "
        "acknowledgements were recorded), so a replay does not dead-letter them again; moves nothing",
    )
    redrive_parser = sub.add_parser("redrive", help="send dead letters back to their event type's topic")
    redrive_parser.add_argument("group")
    redrive_parser.add_argument("--event-id", action="append", type=uuid.UUID, help="only these events")
    args = parser.parse_args(argv)
    if not dead_letter_topic_exists(args.group):
        print(
            f"no dead-letter topic {dead_letter_topic(args.group)}: no consumer group {args.group!r} ever ran here; "
            f"the project's groups: {_project_groups()}",
            file=sys.stderr,
        )
        return 2
    if args.command == "list":
        list_dead_letters(args.group, pending_only=args.pending)
    elif args.command == "ack" and args.done:
        record_done(args.group)
    elif args.command == "ack":
        acknowledge(args.group, set(args.event_id) if args.event_id else None)
    else:
        redrive(args.group, set(args.event_id) if args.event_id else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
