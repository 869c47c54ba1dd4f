"""Consumer benchmark: events applied per second by the runtime next to its two ceilings.

    just bench-consumer [--events 100000] [--batch-size 1000] [--ceiling-seconds 15]

Both consumers read the same freshly produced topic of Debezium-shaped `order.created` records, with
time-ordered event and order ids as the outbox and the order service make them. The bare consumer only
polls (Kafka's ceiling). The runtime decodes, inserts each event id into the inbox, applies the
customer-stats batch handler (one upsert per batch) and commits the database, then the offsets. The bare
rate is measured from the first record to the last, the runtime's from its first batch's commit to its
last's, so neither counts joining or leaving the group.

The durable ceiling is what PostgreSQL can absorb of the same work: pgbench runs bench/consumer_tx.sql
(the inbox claim and the customer-stats upsert of one batch, in one transaction) on one connection, as
the runtime has, in the same run; tps x batch size is the ceiling.

Both measurements start from the same conditions (bench/conditions.py ``start_phase``): a stack at rest, then a
CHECKPOINT (the same WAL state: each page's first change after it writes a full-page image; no timed
checkpoint inside a measurement), and each is followed by a line of what PostgreSQL did in it (WAL, full-page
images per event, checkpoints, autovacuum seen) and the machine's cores. Each removes its rows afterwards and
VACUUMs inbox and customer_stats, outside both measurements: the runtime's 100k deleted inbox rows had been
left to autovacuum, which could land in the ceiling's 15 s right after. The last line is JSON:
{applied_per_s, bare_per_s, durable_ceiling_per_s, ratio, ratio_durable, runtime_cpu_us_per_event} (the
last: the benchmark process's CPU, both threads, per event applied: load-independent, unlike the rates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap, pg_host, pg_port
from apps.customer.consumers import apply_order_events
from bench.conditions import phase_report, start_phase
from bench.pgbench import pgbench_argv, pgbench_result
from outbox.consumer import ConsumerGroup, EventContext
from outbox.dead_letters import dead_letter_topic
from outbox.events import encode_payload
from outbox.runner import CONSUMER_SESSION, settle_heap
from outbox.runner import run as run_loop
from outbox.runtime import ConsumerRuntime
from outbox.topics import delete_topics, ensure_topics
from outbox.writer import new_event_id
from tests.support.orders import order_created


def produce(topic: str, events: int, customers: int, run: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap(), "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(events):
        # Order ids are time-ordered (uuid7) as the order service makes them: the inbox's aggregate index
        # then grows at its end, as it does in production, instead of at random pages.
        ev = order_created(f"bench-{run}-{i % customers}", "9.99", order_id=new_event_id())
        headers: list[tuple[str, str | bytes | None]] = [
            ("id", str(new_event_id())),
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


async def runtime_rate(
    topic: str, events: int, batch_size: int, run: str, *, track_versions: bool
) -> tuple[float, float]:
    """Events applied per second, and the CPU (both threads) it took per event, in microseconds."""
    # The runtime's session settings as outbox.runner gives them to every consumer process.
    settings = {"server_settings": CONSUMER_SESSION}
    engine = create_async_engine(database_url(BY_NAME["customer"]), pool_size=2, connect_args=settings)
    group = ConsumerGroup(f"bench-runtime-{run}", topic_override=[topic], track_versions=track_versions)
    done = asyncio.Event()
    applied = 0
    enough = asyncio.Event()

    async def counting(session: AsyncSession, items: Sequence[tuple[object, EventContext]]) -> None:
        nonlocal applied
        await apply_order_events(session, items)  # type: ignore[arg-type]
        applied += len(items)
        if applied >= events:
            enough.set()

    group.batch_handler("order.created")(counting)
    runtime = ConsumerRuntime(group, async_sessionmaker(engine, expire_on_commit=False), batch_size=batch_size)
    # (wall time, CPU time, events applied) at the end of each batch's database commit: the rate is taken
    # from the first commit to the last (whole batch periods, gaps between batches included); until session
    # 20 it ran on to the end of runtime.run(), which counted the consumer's close (leaving the group, the
    # last synchronous offset commit) as time spent applying.
    commits: list[tuple[float, float, int]] = []
    apply = runtime.transaction.apply

    async def apply_and_note(*args: Any, **kwargs: Any) -> None:
        await apply(*args, **kwargs)
        commits.append((time.perf_counter(), time.process_time(), applied))

    runtime.transaction.apply = apply_and_note  # type: ignore[method-assign]
    settle_heap()  # as outbox.runner does in a consumer process

    async def watch() -> None:
        # Counted in the handler, before its commit; the runtime stops after committing that batch.
        await enough.wait()
        done.set()
        runtime.stop()

    watcher = asyncio.create_task(watch())
    await runtime.run()
    await watcher
    (wall0, cpu0, applied0), (wall1, cpu1, applied1) = commits[0], commits[-1]
    await engine.dispose()
    return (applied1 - applied0) / (wall1 - wall0), (cpu1 - cpu0) * 1e6 / (applied1 - applied0)


async def remove_runtime_rows(run: str) -> None:
    """Leave the shared projection as it was: the runtime's customer_stats and inbox rows, then a VACUUM."""
    engine = create_async_engine(database_url(BY_NAME["customer"]), pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM customer_stats WHERE customer_id LIKE :p"), {"p": f"bench-{run}-%"})
        await conn.execute(text("DELETE FROM inbox WHERE consumer_group = :g"), {"g": f"bench-runtime-{run}"})
    await engine.dispose()
    await asyncio.to_thread(vacuum_customer_tables)


BATCH_SQL = Path(__file__).with_name("consumer_tx.sql")
# -M simple, though the runtime prepares its statements and keeps their generic plans (outbox/runner.py
# CONSUMER_SESSION): at 1,000-event batches planning does not matter. Warm planning of the script's two
# statements takes 0.43-1.1 ms (EXPLAIN (SUMMARY)), about 1 % of a batch's ~85-105 ms; alternated 15-s runs
# (session 24): simple 11,961 and 9,380 events/s at 105.6 and 128.2 us of PostgreSQL CPU per event;
# -M prepared with plan_cache_mode=force_generic_plan 9,881 (an autovacuum of inbox inside) and 7,748 at
# 126.6 and 132.4 us: no gain beyond the runs' drift.
CEILING_MODE = "simple"


def ceiling_variables(batch_size: int, customers: int, run: str) -> list[str]:
    """consumer_tx.sql's variables, as pgbench options."""
    return ["-D", f"batch={batch_size}", "-D", f"customers={customers}", "-D", f"run={run}"]


def durable_ceiling(batch_size: int, customers: int, seconds: int, run: str) -> tuple[float, int]:
    """Events/s PostgreSQL absorbs as the runtime's batches (pgbench, one connection), and the batches it ran;
    its rows stay until ``remove_durable_rows``."""
    spec = BY_NAME["customer"]
    env = {**os.environ, "PGPASSWORD": spec.password()}
    variables = ceiling_variables(batch_size, customers, run)
    argv = pgbench_argv(spec, BATCH_SQL, seconds=seconds, clients=1, mode=CEILING_MODE, options=variables)
    tps, batches = pgbench_result(subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout)
    return tps * batch_size, batches


def remove_durable_rows(run: str) -> None:
    spec = BY_NAME["customer"]
    env = {**os.environ, "PGPASSWORD": spec.password()}
    cleanup = (
        f"DELETE FROM inbox WHERE consumer_group = 'bench-durable-{run}';"
        f"DELETE FROM customer_stats WHERE customer_id LIKE 'bench-durable-{run}-%';"
    )
    psql = ["psql", "-h", pg_host(), "-p", str(pg_port()), "-U", spec.role, "-d", spec.database, "-q", "-c", cleanup]
    subprocess.run(psql, check=True, capture_output=True, env=env)
    vacuum_customer_tables()


async def ceiling_phase(batch_size: int, customers: int, seconds: int) -> float:
    """The durable ceiling from the same starting conditions as the runtime's measurement."""
    run = str(int(time.time()))
    start = await start_phase("durable ceiling")
    try:
        ceiling, batches = await asyncio.to_thread(durable_ceiling, batch_size, customers, seconds, run)
        print(await phase_report("durable ceiling", start, per=batches * batch_size, unit="event"), flush=True)
    finally:
        await asyncio.to_thread(remove_durable_rows, run)
    return ceiling


def vacuum_customer_tables() -> None:
    """Each measurement deletes the ~100k inbox and thousands of customer_stats rows it wrote; left to
    autovacuum (naptime 60 s), their cleanup landed in whichever measurement came next (the durable ceiling
    right after the runtime's, or the next run's runtime). Vacuumed now, outside both, each starts clean."""
    spec = BY_NAME["customer"]
    env = {**os.environ, "PGPASSWORD": spec.password()}
    connect = ["-h", pg_host(), "-p", str(pg_port()), "-U", spec.role, "-d", spec.database]
    subprocess.run(["psql", *connect, "-q", "-c", "VACUUM (ANALYZE) inbox, customer_stats;"], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--no-versions", action="store_true", help="run the group with track_versions=False")
    parser.add_argument("--ceiling-seconds", type=int, default=15, help="how long pgbench measures the ceiling")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    topic = f"bench.order.{run}"
    ensure_topics(kafka_bootstrap(), [topic])
    try:
        result = measure_all(args, topic, run)
    finally:
        # The run's topic and its group's dead-letter topic: nothing reads them again.
        delete_topics(kafka_bootstrap(), [topic, dead_letter_topic(f"bench-runtime-{run}")])
    print(json.dumps(result))


def measure_all(args: argparse.Namespace, topic: str, run: str) -> dict[str, float]:
    started = time.perf_counter()
    produce(topic, args.events, args.customers, run)
    print(f"produced {args.events} events to {topic} in {time.perf_counter() - started:.1f}s", flush=True)
    bare = bare_rate(topic, args.events)
    print(f"bare confluent-kafka consumer: {bare:,.0f} events/s", flush=True)
    measured: list[tuple[float, float]] = []

    async def measure() -> None:
        versions = not args.no_versions
        start = await start_phase("runtime")
        try:
            measured.append(await runtime_rate(topic, args.events, args.batch_size, run, track_versions=versions))
            print(await phase_report("runtime", start, per=args.events, unit="event"), flush=True)
        finally:
            await remove_runtime_rows(run)

    run_loop(measure())  # on the event loop outbox.runner runs consumers on
    applied, cpu_us = measured[0]
    print(
        f"outbox runtime (inbox + customer-stats, batch {args.batch_size}): {applied:,.0f} events/s,"
        f" {cpu_us:.1f} us of CPU per event",
        flush=True,
    )
    ceiling = asyncio.run(ceiling_phase(args.batch_size, args.customers, args.ceiling_seconds))
    print(f"durable ceiling (pgbench, the same batch statements, 1 connection): {ceiling:,.0f} events/s", flush=True)
    result = {
        "applied_per_s": round(applied),
        "bare_per_s": round(bare),
        "durable_ceiling_per_s": round(ceiling),
        "ratio": round(applied / bare, 3),
        "ratio_durable": round(applied / ceiling, 3),
        "runtime_cpu_us_per_event": round(cpu_us, 1),
    }
    return result


if __name__ == "__main__":
    main()
