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
import uuid

import pytest

from infra.paths import REPO
from tests.support.dead_letters import acknowledging_repeats
from tests.support.orders import eventually, order_cancelled, order_created, order_engine, write_events
from tests.support.replay import (
    GROUP,
    Snapshot,
    assert_identical_apart_from_later_events,
    caught_up_to,
    committed_offsets,
    projection,
    reread_budget,
)

# Each test re-reads all of commerce.order (4.7M records on the shared stack in session 31, ~8 minutes at the
# 10k records/s seen): past the suite's 600-s default. The replay's own bound is reread_budget.
pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow, pytest.mark.timeout(1800)]

CONSUMER = "customer-consumer"


async def just(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "just", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, f"just {' '.join(args)} exited {process.returncode}:\n{text}"
    return text


async def snapshot_while_stopped() -> Snapshot:
    """`just stop` first: no one else writes customer_stats, and the stop committed what was applied."""
    await just("stop", CONSUMER)
    return Snapshot(await projection(), await committed_offsets())


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
        return all(c in rows for c in customers) and rows[customers[0]]["USD"][1] == 1

    await eventually(applied, within=120, what="this test's orders applied")
    return set(customers)


async def test_stop_replay_start_rebuilds_an_identical_projection() -> None:
    own = await own_customers_with_orders()
    async with acknowledging_repeats(GROUP):
        try:
            before = await snapshot_while_stopped()
            out = await just("replay", GROUP, "--to-earliest", "--rebuild")
            assert "rebuild: emptied customer_stats" in out
            assert await projection() == {}, "the rebuild empties the projection while the consumer is stopped"
            await just("start", CONSUMER)
            budget = reread_budget(before.committed)
            await eventually(lambda: caught_up_to(before.committed), within=budget, what="the replay caught up")
            after = await snapshot_while_stopped()
        finally:
            await just("start", CONSUMER)
    assert_identical_apart_from_later_events(before, after, own)


async def test_replay_with_restart_stops_resets_starts_and_waits_for_the_lag() -> None:
    own = await own_customers_with_orders()
    async with acknowledging_repeats(GROUP):
        try:
            before = await snapshot_while_stopped()
            budget = reread_budget(before.committed)
            out = await just("replay", GROUP, "--to-earliest", "--rebuild", "--restart", "--timeout", str(budget))
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
