"""Where commit-to-stats time goes: the CDC hop and the consumer hop of recent order confirmations.

    uv run --frozen python -m bench.hops [--since-s 60] [--from EPOCH --to EPOCH] [--slowest 10]

For every order.confirmed record on the order topic in the last ``--since-s`` seconds whose customer has
exactly one counted order (the benchmark's customers): the confirming transaction's commit time
(pg_xact_commit_timestamp of its history row), the Kafka record's timestamp (CreateTime: stamped when
Kafka Connect hands the record to its producer) and the commit time of the customer_stats row that counted
it. Prints p50/p90/p99 of commit -> Kafka (Debezium: WAL decoding and its poll interval), Kafka -> stats
(broker, fetch, decode, the consumer's transaction) and the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg
from confluent_kafka import Consumer, TopicPartition

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap, topic_for
from outbox.decoding import raw_headers

CONFIRMED = (
    "SELECT o.id::text AS order_id, o.customer_id, extract(epoch FROM pg_xact_commit_timestamp(h.xmin))::float8 AS at "
    "FROM orders o JOIN order_status_history h ON h.order_id = o.id AND h.status_to = 'confirmed' "
    "WHERE o.id::text = ANY($1::text[])"
)
COUNTED = (
    "SELECT customer_id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS at FROM customer_stats "
    "WHERE customer_id = ANY($1::varchar[]) AND orders_count = 1"
)


def confirmations_in_kafka(since_ms: int) -> dict[str, float]:
    """order id -> the Kafka timestamp (seconds) of its order.confirmed record, from ``since_ms`` on."""
    topic = topic_for("order")
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap(), "group.id": f"bench-hops-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign(consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=10))
    found: dict[str, float] = {}
    idle = 0
    while idle < 3:
        messages = consumer.consume(1000, 1.0)
        idle = 0 if messages else idle + 1
        for message in messages:
            headers = dict(raw_headers(message))
            key = message.key()
            if message.error() is None and key and headers.get("event_type") == b"order.confirmed":
                found[key.decode()] = message.timestamp()[1] / 1000
    consumer.close()
    return found


async def commit_times(service: str, query: str, ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url(BY_NAME[service], driver="postgresql"))
    try:
        return list(await conn.fetch(query, ids))
    finally:
        await conn.close()


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return f"{name:15s} p50 {at(0.5):7.1f}  p90 {at(0.9):7.1f}  p99 {at(0.99):7.1f}  max {ordered[-1]:7.1f} ms"


async def main_async(since_s: float, window: tuple[float, float] | None = None, slowest: int = 0) -> None:
    in_kafka = confirmations_in_kafka(int((time.time() - since_s) * 1000))
    confirmed = await commit_times("order", CONFIRMED, list(in_kafka))
    if window is not None:  # only confirmations committed in [from, to] (a benchmark's fixed-rate phase)
        confirmed = [r for r in confirmed if window[0] <= r["at"] <= window[1]]
    customers = [r["customer_id"] for r in confirmed]
    counted = {r["customer_id"]: r["at"] for r in await commit_times("customer", COUNTED, customers)}
    hops: dict[str, list[float]] = {"commit -> kafka": [], "kafka -> stats": [], "commit -> stats": []}
    slow: list[tuple[float, float, float, float]] = []
    for row in confirmed:
        stats_at = counted.get(row["customer_id"])
        if stats_at is None:
            continue
        kafka_at = in_kafka[row["order_id"]]
        hops["commit -> kafka"].append((kafka_at - row["at"]) * 1000)
        hops["kafka -> stats"].append((stats_at - kafka_at) * 1000)
        hops["commit -> stats"].append((stats_at - row["at"]) * 1000)
        slow.append((stats_at - row["at"], row["at"], kafka_at, stats_at))
    print(f"{len(hops['commit -> stats'])} confirmations counted once in customer stats")
    for name, values in hops.items():
        if values:
            print(summary(name, values))
    # When the slowest ones were committed, and where their time went: to line them up with other logs.
    for total, committed, kafka_at, stats_at in sorted(slow, reverse=True)[:slowest]:
        print(
            f"  committed {committed:.3f}  commit -> kafka {(kafka_at - committed) * 1000:7.1f}"
            f"  kafka -> stats {(stats_at - kafka_at) * 1000:7.1f}  total {total * 1000:7.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since-s", type=float, default=60.0)
    parser.add_argument("--from", dest="start", type=float, help="confirmations committed from (epoch seconds)")
    parser.add_argument("--to", dest="end", type=float, help="... until (epoch seconds)")
    parser.add_argument("--slowest", type=int, default=0, help="list the N slowest, with their commit times")
    args = parser.parse_args()
    window = (args.start or 0.0, args.end or float("inf")) if args.start or args.end else None
    asyncio.run(main_async(args.since_s, window, args.slowest))


if __name__ == "__main__":
    main()
