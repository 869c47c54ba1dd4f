"""A replay whose broker is SIGKILLed while the group re-reads: the projection ends exact, and every group of the
stack owns its partitions again.

The replay is `outbox.replay GROUP --to-earliest --rebuild` (what `just replay` runs once the group's consumers
are stopped) of a throwaway group (tests.support.throwaway_group: a topic, a table and inbox rows of its own in
the customer database), found through an OUTBOX_CONFIG that lists its module: `just replay` itself stops and
starts only the stack's consumer processes, and a stack group's re-read (commerce.order, millions of records)
outlasts any test. The broker is killed once the rebuilt group has re-applied a part of its topic and started
again; the group must then re-apply the rest, each event once (the rebuild emptied the inbox: a redelivered
event applied twice would show as a second row), and the stack's consumers, whose groups the same crash
disturbed, must all be ready again (their /ready: partitions owned, database answering).
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from apps.common.topology import kafka_bootstrap
from infra import proc, stack
from infra import replay as replay_cli
from infra.paths import REPO
from outbox import groups, replay
from outbox.config import settings
from outbox.consumer import ConsumerGroup
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import fetch
from tests.support.orders import eventually
from tests.support.pg_fault import free_port

# Kafka's restart (10-35 s here) and the groups' rejoins (bounded by the 30-s rebalance timeout, 60 s to a
# runtime's own restart) fit in a few minutes.
pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow, pytest.mark.timeout(900)]

EVENTS = 20_000  # a re-read of several seconds, so the kill falls inside it
KILL_AFTER = EVENTS // 10  # re-applied when the broker is killed
REAPPLIED_WITHIN = 300.0
STACK_READY_WITHIN = 150.0


async def _applied(consumer: ThrowawayConsumer) -> collections.Counter[uuid.UUID]:
    """Rows the handler wrote, per event: a redelivered event applied again would count twice."""
    rows = await fetch("customer", f'SELECT event_id FROM "{consumer.table}"')
    return collections.Counter(r["event_id"] for r in rows)


async def _count(consumer: ThrowawayConsumer) -> int:
    (row,) = await fetch("customer", f'SELECT count(*) AS n FROM "{consumer.table}"')
    return int(row["n"])


async def _without_members(group: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(replay.live_members, admin, group):
        assert time.monotonic() < deadline, f"group {group} still has a member after its consumer stopped"
        await asyncio.sleep(0.5)


def _config_listing_the_throwaway_group(folder: Path) -> Path:
    """The project's [tool.outbox] with tests.support.throwaway_group among its consumer modules."""
    own = settings()
    table = {
        "packages": list(own.packages),
        "consumer_modules": [*own.consumer_modules, "tests.support.throwaway_group"],
        "topic_prefix": own.topic_prefix,
        "streams": list(own.streams),
    }
    path = folder / "pyproject.toml"
    # A TOML array of strings is written as JSON writes it.
    path.write_text("[tool.outbox]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items()))
    return path


def _replay(consumer: ThrowawayConsumer, config: Path) -> str:
    env = {**consumer.env(), "OUTBOX_CONFIG": str(config)}
    argv = [sys.executable, "-m", "outbox.replay", consumer.group, "--to-earliest", "--rebuild"]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _stack_consumers() -> list[stack.Process]:
    """The processes that run the stack's consumer groups (`<service>-consumer`, order-references), as replay
    finds them."""
    names = {
        name
        for module in groups.consumer_modules()
        if isinstance(group := getattr(module, "group", None), ConsumerGroup)
        for name in replay_cli.consumer_components(group.name)
    }
    return [p for p in stack.app_processes() if p.name in names]


async def _ready_again(processes: list[stack.Process], since: float, within: float) -> dict[str, float]:
    """Seconds after ``since`` at which each process answered its readiness probe; every one must, in time."""
    ready: dict[str, float] = {}
    deadline = time.monotonic() + within
    while len(ready) < len(processes):
        waiting = [p for p in processes if p.name not in ready]
        answers = await asyncio.gather(*(asyncio.to_thread(_answers, p) for p in waiting))
        for process, answered in zip(waiting, answers, strict=True):
            if answered:
                ready[process.name] = round(time.monotonic() - since, 1)
        late = sorted({p.name for p in processes} - ready.keys())
        assert not late or time.monotonic() < deadline, f"not ready {within:.0f}s after the broker: {late}"
        await asyncio.sleep(0.5)
    return ready


def _answers(process: stack.Process) -> bool:
    try:
        return proc.running(process.name) and process.probe()
    except OSError:  # refused, or 503 (urllib's HTTPError): not ready
        return False


async def test_kafka_killed_while_a_rebuilt_group_rereads_applies_each_event_once(tmp_path: Path) -> None:
    # Judged: the stack's consumers that are ready now (one stopped by someone on purpose is not this test's).
    judged = [p for p in _stack_consumers() if await asyncio.to_thread(_answers, p)]
    async with ThrowawayConsumer(metrics_port=free_port()) as consumer:
        ids = await asyncio.to_thread(consumer.produce_many, EVENTS)
        consumer.start()

        async def all_applied() -> bool:
            return await _count(consumer) >= EVENTS

        await eventually(all_applied, within=REAPPLIED_WITHIN, what="the first reading")
        assert await consumer.terminate() == 0
        await _without_members(consumer.group)

        out = await asyncio.to_thread(_replay, consumer, _config_listing_the_throwaway_group(tmp_path))
        assert f"rebuild: emptied {consumer.table} and the inbox of {consumer.group}" in out, out
        assert await _count(consumer) == 0

        consumer.start()

        async def partly_reapplied() -> bool:
            return await _count(consumer) >= KILL_AFTER

        await eventually(partly_reapplied, within=REAPPLIED_WITHIN, what="the re-read under way")
        await asyncio.to_thread(proc.kill, "kafka")
        at_kill = await _count(consumer)
        try:
            await asyncio.to_thread(stack.start_component, "kafka")
        finally:
            kafka_back = time.monotonic()
        assert at_kill < EVENTS, "the re-read was over before the kill: raise EVENTS"

        ready_again = asyncio.create_task(_ready_again(judged, kafka_back, STACK_READY_WITHIN))
        await eventually(all_applied, within=REAPPLIED_WITHIN, what="the re-read after the broker's restart")
        ready = await ready_again
        print(f"killed at {at_kill} of {EVENTS} re-applied; stack consumers ready after the broker: {ready}")
        applied = await _applied(consumer)
        outcomes = collections.Counter(await consumer.outcomes(ids))
        assert consumer.alive
        assert await consumer.terminate() == 0
        await _without_members(consumer.group)
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
        for future in admin.delete_consumer_groups([consumer.group], request_timeout=10).values():
            future.result()
    assert applied == collections.Counter(ids), {
        "missing": len(set(ids) - applied.keys()),
        "twice or more": sum(1 for n in applied.values() if n > 1),
        "unknown": len(applied.keys() - set(ids)),
    }
    assert outcomes == {"applied": EVENTS}, outcomes
