"""A consumer's batch behind a lock held for long: it fails fast, rolls back, retries, and /ready says why.

Session 31 (E): a test held an order_db row idle in transaction for ~8 minutes; the order saga's batch waited
on it all that time, with /ready 200, and left its group each time it finished a batch late. Consumers now
set lock_timeout on their sessions (outbox.runner.LOCK_TIMEOUT, OUTBOX_LOCK_TIMEOUT): the waiting statement
fails (55P03), the batch rolls back (its own locks go with it) and is retried as contention, /ready turns
503 naming the lock timeout after CONTENTION_RETRIES_READY failures, and once the holder lets go the event
applies once.

A throwaway consumer of its own (tests.support.throwaway_group), with a 1 s lock timeout; the held row is
ours: an uncommitted insert of the event id its handler is about to insert into its own table (a unique
index makes the handler wait for our transaction, as behind a row lock). Nothing of the stack is locked.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from outbox.events import payload_as_dict
from outbox.runtime import CONTENTION_RETRIES_READY
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import connect
from tests.support.http import api_client
from tests.support.orders import eventually, order_created, produce_raw
from tests.support.pg_fault import free_port

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]

LOCK_TIMEOUT_S = 1


async def _ready(port: int) -> tuple[int, dict[str, object]]:
    try:
        async with api_client(timeout=2) as client:
            answer = await client.get(f"http://127.0.0.1:{port}/ready")
            return answer.status_code, json.loads(answer.content or b"{}")
    except httpx.TransportError:
        return 0, {}


async def _longest_lock_wait(group: str) -> float:
    """How long the consumer's session has waited on a lock right now (0: not waiting)."""
    conn = await connect("customer")
    try:
        waited = await conn.fetchval(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - state_change)), 0) FROM pg_stat_activity "
            "WHERE application_name = $1 AND wait_event_type = 'Lock'",
            f"consumer:{group}",
        )
        return float(waited)
    finally:
        await conn.close()


async def test_a_batch_behind_a_held_row_fails_fast_is_retried_and_ready_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTBOX_LOCK_TIMEOUT", f"{LOCK_TIMEOUT_S}s")
    port = free_port()
    async with ThrowawayConsumer(metrics_port=port) as consumer:
        setup = await connect("customer")
        try:
            await setup.execute(f'CREATE UNIQUE INDEX ON "{consumer.table}" (event_id)')
        finally:
            await setup.close()
        consumer.start()
        first = consumer.produce()

        async def ready_and_applied() -> bool:
            return (await _ready(port))[0] == 200 and await consumer.applied([first]) == [first]

        await eventually(ready_and_applied, within=60, what="the consumer ready, its first event applied")

        held = uuid.uuid4()
        holder = await connect("customer")
        transaction = holder.transaction()
        await transaction.start()
        try:
            await holder.execute(f'INSERT INTO "{consumer.table}" VALUES ($1, $2)', held, "the holder's")
            created = order_created(str(uuid.uuid4()))
            produce_raw(
                consumer.topic, key=str(created.order_id), event_type="order.created",
                payload=payload_as_dict(created), event_id=held,
            )  # fmt: skip
            longest = 0.0
            answers: list[tuple[int, dict[str, object]]] = []
            deadline = time.monotonic() + 45
            while True:
                longest = max(longest, await _longest_lock_wait(consumer.group))
                answers.append(await _ready(port))
                status, body = answers[-1]
                if status == 503 and "lock timeout" in str(body.get("error")):
                    break
                assert time.monotonic() < deadline, f"/ready never named the lock timeout: {answers[-3:]}"
                await asyncio.sleep(0.2)
            # The database answered (it refused for contention): up; the batch waits on it, and says why.
            assert body["database"] is True and body["waiting_for"] == "database", body
            # Ready through the first CONTENTION_RETRIES_READY timeouts: at least that many lock timeouts
            # passed before the 503, each a fresh wait of about LOCK_TIMEOUT_S.
            waited = time.monotonic() - (deadline - 45)
            assert waited >= LOCK_TIMEOUT_S * (CONTENTION_RETRIES_READY + 1) - 0.5, waited
            for _ in range(10):  # the retries go on waiting, each at most the timeout
                longest = max(longest, await _longest_lock_wait(consumer.group))
                await asyncio.sleep(0.3)
            print(f"lock timeout {LOCK_TIMEOUT_S}s: /ready 503 after {waited:.1f}s, longest wait {longest:.2f}s")
            assert 0 < longest < LOCK_TIMEOUT_S + 1, f"a statement waited {longest:.1f}s on the lock"
            assert await consumer.applied([held]) == [], "applied while our row was held"
        finally:
            await transaction.rollback()
            await holder.close()

        async def recovered() -> bool:
            return await consumer.applied([held]) == [held] and (await _ready(port))[0] == 200

        await eventually(recovered, within=60, what="the held event applied once the row was let go, and ready")
        assert await consumer.outcomes([held]) == ["applied"]
