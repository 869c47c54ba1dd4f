"""The payment worker is woken by its queue (payment_0007, session 33, K), on a scratch database at head: each
committed pending operation written, or made due sooner, notifies ``payment_operations_due`` once per
transaction; leases (later) and rollbacks notify nobody; the worker's due check says how long until the next
operation is due; and a poller listening on the channel, idle for IDLE_S, works an operation within a moment of
its commit."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands
from sqlalchemy.ext.asyncio import create_async_engine

from apps.common.db import alchemy_config
from apps.common.poller import DueCheck
from apps.common.topology import BY_NAME
from apps.payment.worker import CHANNEL, DUE
from tests.integration.test_migrations_round_trip import scratch_database
from tests.unit.test_poller_due_check import Counting

pytestmark = pytest.mark.usefixtures("stack")

PAYMENT = BY_NAME["payment"]


async def _payment(conn: asyncpg.Connection) -> uuid.UUID:
    payment_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO payments (id, order_id, amount, currency, status, provider, payment_method_type, idempotency_key) "
        "VALUES ($1, $2, 10, 'USD', 'pending', 'sandbox', 'card', $3)",
        payment_id,
        uuid.uuid4(),
        f"order:{payment_id}",
    )
    return payment_id


async def _operation(conn: asyncpg.Connection, payment_id: uuid.UUID, outcome: str = "pending") -> uuid.UUID:
    op_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO payment_operations (id, payment_id, kind, idempotency_key, amount, outcome, request) "
        "VALUES ($1, $2, 'authorize', $3, $4, $5, '{}')",
        op_id,
        payment_id,
        f"op:{op_id}",
        Decimal("10.00"),
        outcome,
    )
    return op_id


async def _notifications(url: str) -> None:
    heard: list[str] = []  # payloads
    listener = await asyncpg.connect(url.replace("+asyncpg", ""))
    writer = await asyncpg.connect(url.replace("+asyncpg", ""))

    async def settled() -> int:
        """The notifications delivered since the last call. A notification is delivered after its commit,
        asynchronously: a marker sent afterwards in a transaction of its own arrives after every one of them
        (PostgreSQL delivers in commit order), so once it is heard none is still on its way (a fixed 0.2-s
        wait missed a late one on a busy machine)."""
        marker = f"marker-{uuid.uuid4()}"
        await writer.execute("SELECT pg_notify($1, $2)", CHANNEL, marker)
        deadline = asyncio.get_running_loop().time() + 30
        while marker not in heard:
            assert asyncio.get_running_loop().time() < deadline, f"the marker was not delivered: {heard}"
            await asyncio.sleep(0.01)
        before = heard[: heard.index(marker)]
        heard.clear()
        assert set(before) <= {""}, before  # the trigger's own notifications
        return len(before)

    try:
        await listener.add_listener(CHANNEL, lambda *args: heard.append(args[3]))
        assert await writer.fetchval(DUE) is None  # nothing pending
        async with writer.transaction():
            payment_id = await _payment(writer)
            first = await _operation(writer, payment_id)
            await _operation(writer, payment_id)
        assert await settled() == 1  # two operations in one transaction: one notification
        assert await writer.fetchval(DUE) <= 0
        tx = writer.transaction()
        await tx.start()
        await _operation(writer, payment_id)
        await tx.rollback()
        assert await settled() == 0
        await _operation(writer, payment_id, outcome="succeeded")
        assert await settled() == 0
        later = "UPDATE payment_operations SET next_attempt_at = now() + interval '30 seconds' WHERE payment_id = $1"
        await writer.execute(later, payment_id)  # a lease
        assert await settled() == 0
        assert 25 < await writer.fetchval(DUE) <= 30
        await writer.execute("UPDATE payment_operations SET next_attempt_at = now() WHERE id = $1", first)
        assert await settled() == 1  # a lease ended by hand
        assert await writer.fetchval(DUE) <= 0
    finally:
        await listener.close()
        await writer.close()


class Answered(DueCheck):
    """Counts its answers: its connection LISTENs before the first (a notification before that is lost)."""

    asked = 0

    async def due_in(self) -> float | None:
        answer = await super().due_in()
        self.asked += 1
        return answer


async def _worked_at_once(url: str) -> None:
    engine = create_async_engine(url)
    check = Answered(engine, "test-payment-worker", DUE, channel=CHANNEL)
    poller = Counting(check, poll_s=0.05)
    task = asyncio.create_task(poller.run())
    writer = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        # Listening once the first check has answered (within 0.5 s was assumed: on a busy machine a commit
        # before the LISTEN would wait out IDLE_S).
        deadline = asyncio.get_running_loop().time() + 30
        while not check.asked:
            assert asyncio.get_running_loop().time() < deadline, "the due check never answered"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        assert check.asked == 1 and poller.rounds == [] and poller.healthy  # nothing due: waits IDLE_S (10 s)
        payment_id = await _payment(writer)
        await _operation(writer, payment_id)
        committed = asyncio.get_running_loop().time()
        for _ in range(100):
            if poller.rounds:
                break
            await asyncio.sleep(0.01)
        assert poller.rounds and poller.rounds[0] - committed < 0.5, poller.rounds
    finally:
        poller.stop()
        await asyncio.wait_for(task, 5)
        await writer.close()
        await engine.dispose()


def test_a_pending_operation_committed_notifies_the_worker_once_per_transaction() -> None:
    with scratch_database(PAYMENT) as url:
        AlembicCommands(sqlalchemy_config=alchemy_config(PAYMENT)).upgrade("head")
        asyncio.run(_notifications(url))


def test_an_idle_worker_works_a_new_operation_at_once() -> None:
    with scratch_database(PAYMENT) as url:
        AlembicCommands(sqlalchemy_config=alchemy_config(PAYMENT)).upgrade("head")
        asyncio.run(_worked_at_once(url))
