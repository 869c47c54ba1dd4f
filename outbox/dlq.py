"""Dead letters of a consumer group: list them, and redrive them to their event type's topic.

    python -m outbox.dlq list customer-stats
    python -m outbox.dlq redrive customer-stats [--event-id ID ...]

A redriven message is produced again, with its original key, value and headers, to the topic it came from,
or to its stream's topic if a stream (outbox.routing) moved its event type off its aggregate's topic since:
the group no longer reads the old one. The group's inbox lets a dead-lettered event id be applied once it
comes back. Redrive progress is the committed offset of the group `<group>.redrive` on the dead-letter
topic, so each dead letter is redriven once.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from outbox import dead_letters as dl
from outbox.config import kafka_bootstrap
from outbox.dead_letters import REDRIVE_HEADER, dead_letter_topic
from outbox.decoding import raw_headers
from outbox.routing import topic_for_event


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
    def original_headers(self) -> list[tuple[str, str | bytes | None]]:
        return [(k, v) for k, v in raw_headers(self.message) if not dl.is_dead_letter_header(k)]


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
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        if from_start:
            partitions = [TopicPartition(topic, p.partition, 0) for p in partitions]
        else:
            committed = consumer.committed(partitions, timeout=10)
            partitions = [TopicPartition(topic, p.partition, p.offset if p.offset >= 0 else 0) for p in committed]
        consumer.assign(partitions)
        remaining = {p.partition for p in partitions}
        while remaining:
            messages = consumer.consume(500, 2.0)
            if not messages:
                break  # nothing more within the timeout
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


def list_dead_letters(group: str) -> int:
    count = 0
    for _, letter in read(group, from_start=True):
        h = letter.headers
        print(
            f"{letter.message.partition()}:{letter.message.offset()}  {h.get('event_type', '?'):<24} "
            f"id={h.get('id', '?')}  from {h.get(dl.ORIGINAL_TOPIC)}@{h.get(dl.ORIGINAL_OFFSET)}  "
            f"{h.get(dl.ERROR_TYPE)}: {h.get(dl.ERROR, '')[:160]}"
        )
        count += 1
    print(f"{count} dead letters in {dead_letter_topic(group)}")
    return count


def redrive(group: str, event_ids: set[uuid.UUID] | None = None) -> int:
    """Produce dead letters (all not yet redriven, or only the given event ids) back to their topics."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap(), "enable.idempotence": True, "acks": "all"})
    sent = 0
    last: dict[int, int] = {}
    consumer: Consumer | None = None
    for consumer, letter in read(group, from_start=False):
        last[letter.message.partition() or 0] = letter.message.offset() or 0
        event_id = letter.headers.get("id")
        if event_ids is not None and (event_id is None or uuid.UUID(event_id) not in event_ids):
            continue
        producer.produce(
            letter.topic,
            key=letter.message.key(),
            value=letter.message.value(),
            headers=[*letter.original_headers, (REDRIVE_HEADER, group)],
        )
        sent += 1
        if producer.flush(30):
            raise SystemExit("redrive: Kafka did not acknowledge the redriven messages; nothing was marked done")
        if event_ids is None:
            consumer.commit(
                offsets=[TopicPartition(dead_letter_topic(group), p, o + 1) for p, o in last.items()],
                asynchronous=False,
            )
    print(f"redrove {sent} dead letters of {group}")
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every dead letter of a group").add_argument("group")
    redrive_parser = sub.add_parser("redrive", help="send dead letters back to their event type's topic")
    redrive_parser.add_argument("group")
    redrive_parser.add_argument("--event-id", action="append", type=uuid.UUID, help="only these events")
    args = parser.parse_args(argv)
    if args.command == "list":
        list_dead_letters(args.group)
    else:
        redrive(args.group, set(args.event_id) if args.event_id else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
