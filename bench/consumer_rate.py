"""CPU per event of a consumer process at the stack's real rates: a few events per batch, not thousands.

    uv run --frozen python -m bench.consumer_rate [--rate 30] [--seconds 20] [--idle-seconds 10] [--ignored N]
        [--no-skip]

A child process runs the outbox runtime as outbox.runner does (heap settled, the customer-stats batch
handler, versions tracked) on a fresh topic; this process first leaves it idle (its CPU per second with
nothing to do), then produces a pending order's `order.created` (v1) and `order.confirmed` (v2) of one
order after the other at --rate events/s, waits until the inbox holds what it claims (the confirmation;
the pending order.created too with --no-skip, as before handlers declared skip=), and reads the child's
utime+stime from /proc: CPU per order, per event and per batch (also by thread), and how many batches
the events took. With --ignored N, each order's
two events are followed by N of a type the group does not handle (as most of what a group reads at the
stack is); --rate counts them too. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
from confluent_kafka import Producer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from apps.customer.consumers import apply_order_events
from apps.customer.projections import not_a_purchase
from bench.cpu import TICKS, stat_fields
from outbox.consumer import ConsumerGroup
from outbox.dead_letters import dead_letter_topic
from outbox.events import Event, encode_payload
from outbox.runner import run as run_loop
from outbox.runner import settle_heap
from outbox.runtime import ConsumerRuntime
from outbox.topics import delete_topics, ensure_topics
from outbox.writer import new_event_id
from tests.support.orders import order_confirmed, order_created


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = stat_fields(raw)
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a process's threads, summed by thread name: librdkafka's rdk:*, the
    event loop's thread ("loop") and Python's other threads ("python": the prefetch thread, to_thread's)."""
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        name = "loop" if task.name == str(pid) else raw[raw.index("(") + 1 : raw.rindex(")")].rstrip("0123456789_")
        fields = stat_fields(raw)
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return used


def cpu_total(pid: int) -> float:
    return sum(cpu_seconds(pid))


def _events(run: str, i: int) -> list[tuple[Event, int]]:
    # Pending, as the order service places them: the saga's order.confirmed makes them a purchase.
    created = msgspec.structs.replace(
        order_created(f"bench-rate-{run}-{i % 50}", "9.99", order_id=new_event_id()), status="pending"
    )
    return [(created, 1), (order_confirmed(created), 2)]


def produce_at(topic: str, rate: float, seconds: float, run: str, ignored: int = 0) -> int:
    """Produce order.created/order.confirmed pairs, each followed by ``ignored`` events of a type the group
    does not handle, ``rate`` records/s in all; returns how many orders were sent."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap(), "linger.ms": 0})
    produced, started = 0, time.monotonic()
    i = 0
    while time.monotonic() - started < seconds:
        pair = _events(run, i)
        extra = [(pair[0][0], 3)] * ignored  # sent as order.status_changed: customer-stats ignores it
        for n, (ev, version) in enumerate(pair + extra):
            due = started + produced / rate
            time.sleep(max(0.0, due - time.monotonic()))
            headers: list[tuple[str, str | bytes | None]] = [
                ("id", str(new_event_id())),
                ("event_type", ev.event_type if n < len(pair) else "order.status_changed"),
                ("event_version", str(version)),
                ("schema_version", "1"),
                ("aggregate_type", "order"),
            ]
            producer.produce(topic, key=str(ev.order_id), value=encode_payload(ev), headers=headers)  # type: ignore[attr-defined]
            producer.poll(0)
            produced += 1
        i += 1
    assert producer.flush(30) == 0
    return i


# Every row a batch inserts carries its transaction's now(): distinct processed_at values count batches.
_APPLIED = text("SELECT count(*), count(DISTINCT processed_at) FROM inbox WHERE consumer_group = :g")


async def _inbox_count(group: str) -> tuple[int, int]:
    engine = create_async_engine(database_url(BY_NAME["customer"]), pool_size=1)
    try:
        async with engine.connect() as conn:
            events, batches = (await conn.execute(_APPLIED, {"g": group})).one()
            return int(events), int(batches)
    finally:
        await engine.dispose()


def wait_applied(group: str, expected: int, within: float = 120.0) -> int:
    """Wait until the inbox holds ``expected`` events of the group; returns the batches they took."""
    deadline = time.monotonic() + within
    while (found := asyncio.run(_inbox_count(group)))[0] < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {found[0]} of {expected} events applied")
        time.sleep(0.2)
    return found[1]


async def _cleanup(group: str, run: str) -> None:
    engine = create_async_engine(database_url(BY_NAME["customer"]), pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM customer_stats WHERE customer_id LIKE :p"), {"p": f"bench-rate-{run}-%"})
        await conn.execute(text("DELETE FROM inbox WHERE consumer_group = :g"), {"g": group})
    await engine.dispose()


async def child(topic: str, group_name: str, skips: bool) -> None:
    """The consumer process: the runtime as outbox.runner runs it; prints 'ready' once it owns partitions.
    ``skips``: the pending order's order.created skipped before the inbox, as customer-stats does."""
    import signal

    engine = create_async_engine(database_url(BY_NAME["customer"]), pool_size=2, max_overflow=2)
    group = ConsumerGroup(group_name, topic_override=[topic])
    group.batch_handler("order.created", skip=not_a_purchase if skips else None)(apply_order_events)
    group.batch_handler("order.confirmed")(apply_order_events)
    runtime = ConsumerRuntime(group, async_sessionmaker(engine, expire_on_commit=False))
    settle_heap()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runtime.stop)

    async def announce() -> None:
        while not runtime.ready:  # noqa: ASYNC110 - set by librdkafka callbacks in other threads
            await asyncio.sleep(0.1)
        print("ready", flush=True)

    announcer = asyncio.create_task(announce())
    await runtime.run()
    announcer.cancel()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=30.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--ignored", type=int, default=0, help="events of an unhandled type after each order's two")
    parser.add_argument(
        "--no-skip", action="store_true", help="claim the pending order.created too (before handlers declared skip=)"
    )
    parser.add_argument("--child", nargs=3, metavar=("TOPIC", "GROUP", "SKIPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_loop(child(args.child[0], args.child[1], args.child[2] == "skips"))  # outbox.runner's event loop
        return
    run = uuid.uuid4().hex[:8]
    topic, group = f"bench.rate.{run}", f"bench-rate-{run}"
    ensure_topics(kafka_bootstrap(), [topic])
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.consumer_rate", "--child", topic, group, "all" if args.no_skip else "skips"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        while proc.stdout.readline().strip() != "ready":
            if proc.poll() is not None:
                raise SystemExit("the consumer process exited")
        claimed = 2 if args.no_skip else 1  # inbox rows per order
        warm = produce_at(topic, 10, 1, run) * claimed  # warm-up: statements prepared, connections open
        warm_batches = wait_applied(group, warm)
        before = cpu_total(proc.pid)
        time.sleep(args.idle_seconds)
        idle = cpu_total(proc.pid) - before
        (user0, system0), started, threads0 = cpu_seconds(proc.pid), time.monotonic(), thread_cpu(proc.pid)
        orders = produce_at(topic, args.rate, args.seconds, run, args.ignored)
        sent = orders * 2
        batches = wait_applied(group, warm + orders * claimed) - warm_batches
        (user1, system1), elapsed = cpu_seconds(proc.pid), time.monotonic() - started
        threads = {name: cpu - threads0.get(name, 0.0) for name, cpu in thread_cpu(proc.pid).items()}
        used, system = user1 - user0 + system1 - system0, system1 - system0
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        asyncio.run(_cleanup(group, run))
        delete_topics(kafka_bootstrap(), [topic, dead_letter_topic(group)])
    result = {
        "rate": args.rate,
        "events": sent,
        "ignored_per_order": args.ignored,
        "skips": not args.no_skip,
        "cpu_ms_per_order": round(used * 1000 / orders, 3),
        "batches": batches,
        "idle_cpu_ms_per_s": round(idle * 1000 / args.idle_seconds, 2),
        "cpu_ms_per_event": round(used * 1000 / sent, 3),
        "system_share": round(system / used, 2) if used else None,
        "cpu_ms_per_event_net_of_idle": round((used - idle / args.idle_seconds * elapsed) * 1000 / sent, 3),
        "cpu_ms_per_batch": round(used * 1000 / batches, 3) if batches else None,
        "cpu_ms_per_event_by_thread": {
            name: round(cpu * 1000 / sent, 3) for name, cpu in sorted(threads.items(), key=lambda kv: -kv[1]) if cpu
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
