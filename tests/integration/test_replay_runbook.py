"""The replay runbook, run as an operator would, with the one-component commands only.

    just stop customer-consumer
    just replay customer-stats --to-earliest --rebuild
    just start customer-consumer
    just replay customer-stats --to-earliest --rebuild --restart

Each test compares the whole customer_stats projection before and after, taken while the consumer is stopped
(so each snapshot matches the group's committed offsets exactly). Other tests may place orders meanwhile:
the customers named by events past the first snapshot's offsets are read from the topic and left out of
the comparison; everyone else's row must be identical, this test's own customers included.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from apps.common.topology import kafka_bootstrap, topic_for
from infra.paths import REPO
from outbox import replay
from tests.support.db import connect
from tests.support.orders import eventually, order_cancelled, order_created, order_engine, write_events

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]

GROUP = "customer-stats"
CONSUMER = "customer-consumer"
ORDER_TOPIC = topic_for("order")
Row = tuple[int, int, str, str]


@dataclass(frozen=True)
class Snapshot:
    """customer_stats and the group's committed offsets, taken together while its consumer is stopped."""

    rows: dict[str, Row]
    committed: dict[int, int]


async def just(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "just", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, f"just {' '.join(args)} exited {process.returncode}:\n{text}"
    return text


async def committed_offsets() -> dict[int, int]:
    plans = await asyncio.to_thread(
        replay.plan, GROUP, [ORDER_TOPIC], to_earliest=False, to_datetime=None, to_offset=0, bootstrap=kafka_bootstrap()
    )
    return {p.partition: max(p.current, 0) for p in plans}


async def projection() -> dict[str, Row]:
    conn = await connect("customer")
    try:
        rows = await conn.fetch(
            "SELECT customer_id, orders_count, cancelled_count, total_spent, last_order_at FROM customer_stats"
        )
    finally:
        await conn.close()
    return {r["customer_id"]: (r[1], r[2], str(r[3]), str(r[4])) for r in rows}


async def snapshot_while_stopped() -> Snapshot:
    """`just stop` first: no one else writes customer_stats, and the stop committed what was applied."""
    await just("stop", CONSUMER)
    return Snapshot(await projection(), await committed_offsets())


def customers_named_between(start: dict[int, int], end: dict[int, int]) -> set[str]:
    """Customer ids in the order events at offsets [start, end) of each partition."""
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap(), "group.id": f"test-replay-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    pending = {p: end[p] for p in end if end[p] > start.get(p, 0)}
    consumer.assign([TopicPartition(ORDER_TOPIC, p, start.get(p, 0)) for p in pending])
    named: set[str] = set()
    deadline = time.monotonic() + 60
    try:
        while pending:
            assert time.monotonic() < deadline, f"the topic did not reach the committed offsets {pending}"
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset < end.get(partition, 0):
                    payload: dict[str, Any] = json.loads(message.value() or b"{}")
                    named.add(str(payload.get("customer_id")))
            # Positions, not the last offset seen: offsets may have gaps (transaction markers).
            for tp in consumer.position([TopicPartition(ORDER_TOPIC, p) for p in list(pending)]):
                if tp.offset >= pending[tp.partition]:
                    consumer.pause([TopicPartition(ORDER_TOPIC, tp.partition)])
                    del pending[tp.partition]
    finally:
        consumer.close()
    return named


def assert_identical_apart_from_later_events(before: Snapshot, after: Snapshot, own: set[str]) -> None:
    touched = customers_named_between(before.committed, after.committed)
    assert not own & touched, "this test's customers must only have the events it wrote"
    kept_before = {c: row for c, row in before.rows.items() if c not in touched}
    kept_after = {c: row for c, row in after.rows.items() if c not in touched}
    assert own <= kept_before.keys()
    missing = kept_before.keys() - kept_after.keys()
    extra = kept_after.keys() - kept_before.keys()
    changed = {
        c: (kept_before[c], kept_after[c])
        for c in kept_before.keys() & kept_after.keys()
        if kept_before[c] != kept_after[c]
    }
    assert not missing and not extra and not changed, {
        "missing": sorted(missing)[:5],
        "extra": sorted(extra)[:5],
        "changed": dict(list(changed.items())[:5]),
    }
    print(f"compared {len(kept_before)} customers ({len(touched)} left out: newer events)")


async def own_customers_with_orders() -> set[str]:
    customers = [str(uuid.uuid4()) for _ in range(3)]
    created = [order_created(c, total) for c in customers for total in ("12.30", "4.05")]
    engine = order_engine()
    try:
        await write_events(engine, [*created, order_cancelled(created[0])])
    finally:
        await engine.dispose()

    async def applied() -> bool:
        rows = await projection()
        return all(c in rows for c in customers) and rows[customers[0]][1] == 1

    await eventually(applied, within=120, what="this test's orders applied")
    return set(customers)


async def caught_up_to(goal: dict[int, int]) -> bool:
    now = await committed_offsets()
    return all(now.get(p, 0) >= offset for p, offset in goal.items())


async def test_stop_replay_start_rebuilds_an_identical_projection() -> None:
    own = await own_customers_with_orders()
    try:
        before = await snapshot_while_stopped()
        out = await just("replay", GROUP, "--to-earliest", "--rebuild")
        assert "rebuild: emptied customer_stats" in out
        assert await projection() == {}, "the rebuild empties the projection while the consumer is stopped"
        await just("start", CONSUMER)
        await eventually(lambda: caught_up_to(before.committed), within=300, what="the replay caught up")
        after = await snapshot_while_stopped()
    finally:
        await just("start", CONSUMER)
    assert_identical_apart_from_later_events(before, after, own)


async def test_replay_with_restart_stops_resets_starts_and_waits_for_the_lag() -> None:
    own = await own_customers_with_orders()
    try:
        before = await snapshot_while_stopped()
        out = await just("replay", GROUP, "--to-earliest", "--rebuild", "--restart")
        assert "rebuild: emptied customer_stats" in out
        assert f"{CONSUMER:<18} ready" in out, out
        last_progress = [line for line in out.splitlines() if line.startswith(f"replay {GROUP}: lag")][-1]
        assert last_progress.split()[3] == "0", out
        # The progress ended at the offsets seen at the reset; the snapshot is a stop away.
        assert await caught_up_to(before.committed)
        after = await snapshot_while_stopped()
    finally:
        await just("start", CONSUMER)
    assert_identical_apart_from_later_events(before, after, own)
