"""Consumer benchmark: events applied per second by the runtime next to a bare confluent-kafka read.

    just bench-consumer [--events 100000] [--batch-size 1000]

Both read the same freshly produced topic of Debezium-shaped `order.created` records. The bare consumer
only polls; the runtime decodes, inserts each event id into the inbox, applies the customer-stats batch
handler (one upsert per batch) and commits the database, then the offsets. Rates are measured from the
first record to the last, so group joins are not counted. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, Producer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from apps.customer.consumers import apply_order_events
from outbox.consumer import ConsumerGroup, EventContext
from outbox.events import encode_payload
from outbox.runtime import ConsumerRuntime
from outbox.topics import ensure_topics
from tests.support.orders import order_created


def produce(topic: str, events: int, customers: int, run: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap(), "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(events):
        ev = order_created(f"bench-{run}-{i % customers}", "9.99")
        headers: list[tuple[str, str | bytes | None]] = [
            ("id", str(uuid.uuid4())),
            ("event_type", "order.created"),
            ("event_version", "1"),
            ("schema_version", "1"),
            ("aggregate_type", "order"),
        ]
        while True:
            try:
                producer.produce(topic, key=str(ev.order_id), value=encode_payload(ev), headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def bare_rate(topic: str, events: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap(),
            "group.id": f"bench-bare-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen, first = 0, 0.0
    while seen < events:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                if seen == 0:
                    first = time.perf_counter()
                seen += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    return events / elapsed


async def runtime_rate(topic: str, events: int, batch_size: int, run: str, *, track_versions: bool) -> float:
    engine = create_async_engine(database_url(BY_NAME["customer"]), pool_size=2)
    group = ConsumerGroup(f"bench-runtime-{run}", topic_override=[topic], track_versions=track_versions)
    done = asyncio.Event()
    applied, first = 0, 0.0
    enough = asyncio.Event()

    async def counting(session: AsyncSession, items: Sequence[tuple[object, EventContext]]) -> None:
        nonlocal applied, first
        if applied == 0:
            first = time.perf_counter()
        await apply_order_events(session, items)  # type: ignore[arg-type]
        applied += len(items)
        if applied >= events:
            enough.set()

    group.batch_handler("order.created")(counting)
    runtime = ConsumerRuntime(group, async_sessionmaker(engine, expire_on_commit=False), batch_size=batch_size)

    async def watch() -> None:
        # Counted in the handler, before its commit; the runtime stops after committing that batch.
        await enough.wait()
        done.set()
        runtime.stop()

    watcher = asyncio.create_task(watch())
    await runtime.run()
    await watcher
    elapsed = time.perf_counter() - first
    async with engine.begin() as conn:  # leave the shared projection as it was
        await conn.execute(text("DELETE FROM customer_stats WHERE customer_id LIKE :p"), {"p": f"bench-{run}-%"})
        await conn.execute(text("DELETE FROM inbox WHERE consumer_group = :g"), {"g": group.name})
    await engine.dispose()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--no-versions", action="store_true", help="run the group with track_versions=False")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    topic = f"bench.order.{run}"
    ensure_topics(kafka_bootstrap(), [topic])
    started = time.perf_counter()
    produce(topic, args.events, args.customers, run)
    print(f"produced {args.events} events to {topic} in {time.perf_counter() - started:.1f}s", flush=True)
    bare = bare_rate(topic, args.events)
    print(f"bare confluent-kafka consumer: {bare:,.0f} events/s", flush=True)
    applied = asyncio.run(runtime_rate(topic, args.events, args.batch_size, run, track_versions=not args.no_versions))
    print(f"outbox runtime (inbox + customer-stats, batch {args.batch_size}): {applied:,.0f} events/s", flush=True)
    print(json.dumps({"applied_per_s": round(applied), "bare_per_s": round(bare), "ratio": round(applied / bare, 3)}))


if __name__ == "__main__":
    main()
