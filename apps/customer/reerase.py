"""Erase again after a restore: ``python -m apps.customer.reerase --since TIME [--dry-run]``.

A pg_dump restore or a point-in-time recovery to a moment before some erasures brings those people back
(rows, addresses and data keys as they were). Every erasure is a ``customer.erased`` record in
``commerce.customer`` (kept a year): this reads the topic from TIME (each partition's first offset at or
after it, Kafka's offsets_for_times) to its end now, and runs the erasure again for every id it names
(apps/customer/erasure.py). An id still erased is answered without a write; a restored one is anonymised
again, its data key destroyed again, and a new customer.erased tells the other services, whose handlers
change nothing where their copies stayed anonymised (docs/operations.md, "Erasing a person").
``--announce`` publishes customer.erased again for ids still erased as well: every service applies it
once more (an order created from a checkout completed just before the erasure, a consumer restored from
a backup of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Final

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.errors import NotFound
from apps.common.topology import BY_NAME, database_url, kafka_bootstrap, topic_for
from apps.customer.erasure import CustomerErasure

__all__ = ["erased_since", "main", "reerase"]

ACTOR: Final = "service:reerase"
_ERASED: Final = b"customer.erased"


def erased_since(since: dt.datetime, *, timeout_s: float = 60.0) -> list[uuid.UUID]:
    """The ids of every customer.erased published at or after ``since``, in the order read."""
    topic = topic_for("customer")
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap(), "group.id": f"reerase-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        at = int(since.timestamp() * 1000)
        starts = consumer.offsets_for_times([TopicPartition(topic, p, at) for p in partitions], timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        todo = {s.partition: ends[s.partition] for s in starts if 0 <= s.offset < ends[s.partition]}
        consumer.assign([s for s in starts if s.partition in todo])
        ids: list[uuid.UUID] = []
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(todo)} not read to their end in {timeout_s}s")
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                if dict(message.headers() or []).get("event_type") == _ERASED and message.key():
                    ids.append(uuid.UUID((message.key() or b"").decode()))
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset + 1 >= todo.get(partition, 0):
                    todo.pop(partition, None)
        return list(dict.fromkeys(ids))  # an id erased twice is erased again once
    finally:
        consumer.close()


async def reerase(ids: Sequence[uuid.UUID], *, announce: bool = False) -> int:
    """Run the erasure for each id (one transaction each); how many ids are customers here. ``announce``:
    publish customer.erased again for those still erased too."""
    engine = create_async_engine(database_url(BY_NAME["customer"]), poolclass=NullPool)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    done = 0
    try:
        for customer_id in ids:
            async with sessions() as session:
                try:
                    await CustomerErasure(session, actor=ACTOR).erase(customer_id, announce_again=announce)
                    done += 1
                except NotFound:
                    continue  # not in this (restored) database at all: nothing to erase
    finally:
        await engine.dispose()
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.customer.reerase", description=__doc__.split("\n")[0])
    parser.add_argument("--since", required=True, type=dt.datetime.fromisoformat, help="ISO time, with its offset")
    parser.add_argument("--dry-run", action="store_true", help="list the ids, erase nothing")
    parser.add_argument(
        "--announce", action="store_true", help="publish customer.erased again for ids that are still erased"
    )
    args = parser.parse_args(argv)
    if args.since.tzinfo is None:
        parser.error("--since needs a UTC offset, e.g. 2026-11-26T03:00:00+00:00")
    ids = erased_since(args.since)
    print(f"{len(ids)} customers erased since {args.since.isoformat()}")
    if not args.dry_run:
        print(f"erased again (or still erased): {asyncio.run(reerase(ids, announce=args.announce))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
