"""Order migrations under load, and every order migration down to nothing and up again.

Under load: the order service takes a steady stream of orders on 4 connections while the live order_db goes
down to the oldest revision its code serves (``OLDEST_SERVED``) and up to head again. No request may fail, and
no ACCESS EXCLUSIVE lock on orders may be held longer than the migrations' lock_timeout. The code at head
writes a ``data_access_log`` row with every order (order_0009), so below that revision every order would fail:
a deployment never takes a database below what its running code needs. The expand/contract of order_0005-0007
(created_by_service -> source_service) was run under load here while it was the newest change (session 17);
its steps are still run both ways by the round trip below. Round trip: a scratch database of its own goes from
nothing to head, down to nothing revision by revision, and up again, with an order row that keeps its source
service throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.db import alchemy_config
from apps.common.migrations_env import lock_timeout
from apps.common.topology import BY_NAME, database_url
from infra import migration_lint, monitoring, postgres
from tests.support.http import api_client, create_customer, create_product, service_url, set_stock

pytestmark = pytest.mark.usefixtures("stack")

ORDER = BY_NAME["order"]
CLIENTS = 4
# Each client pauses between orders: a steady stream is what crosses the migrations; a flood (8 clients flat
# out placed ~4,500 orders while order_0010 re-sealed every row) leaves the saga minutes of backlog that
# every later test then waits behind.
PAUSE_S = 0.5
# The oldest schema the order code at head runs on: data_access_log (every order writes a row) came in 0009.
OLDEST_SERVED = "order_0009"


def _commands() -> AlembicCommands:
    return AlembicCommands(sqlalchemy_config=alchemy_config(ORDER))


async def _place_orders(stop: asyncio.Event, customers: list[str], product: str) -> tuple[int, list[str]]:
    placed, failures = 0, []
    async with api_client(base_url=service_url("order"), timeout=30) as http:

        async def client(index: int) -> None:
            nonlocal placed
            while not stop.is_set():
                body = {"customer_id": customers[index], "items": [{"product_id": product, "quantity": 1}]}
                response = await http.post("/api/orders", json=body)
                if response.status_code == 201:
                    placed += 1
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                await asyncio.sleep(PAUSE_S)

        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return placed, failures


async def _watch_exclusive_locks(stop: asyncio.Event) -> float:
    """The longest an ACCESS EXCLUSIVE lock on orders was seen held without a break (sampled every 20 ms)."""
    order_db = await asyncpg.connect(database_url(ORDER, driver="postgresql"))
    try:
        database, relation = await order_db.fetchrow(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), 'orders'::regclass::oid"
        )
    finally:
        await order_db.close()
    conn = await asyncpg.connect(monitoring.monitoring_dsn())
    held: dict[int, float] = {}  # pid -> since when it holds the lock, in this unbroken run of samples
    longest = 0.0
    try:
        while not stop.is_set():
            pids = await conn.fetch(
                "SELECT pid FROM pg_locks WHERE database = $1 AND relation = $2 AND mode = 'AccessExclusiveLock' "
                "AND granted",
                database,
                relation,
            )
            now = time.monotonic()
            held = {pid: held.get(pid, now) for (pid,) in pids}
            longest = max([longest, *(now - since for since in held.values())])
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return longest


async def test_migrations_down_to_the_oldest_served_and_up_run_under_load_without_a_failed_request() -> None:
    customers = [str((await create_customer())["id"]) for _ in range(CLIENTS)]
    product = str((await create_product("3.00"))["id"])
    await set_stock(product, 1_000_000)
    stop = asyncio.Event()
    load = asyncio.create_task(_place_orders(stop, customers, product))
    locks = asyncio.create_task(_watch_exclusive_locks(stop))
    await asyncio.sleep(1.5)  # load running before the first migration
    commands = _commands()
    head = migration_lint.revisions(commands)[-1][1]
    started = time.monotonic()
    await asyncio.to_thread(commands.downgrade, OLDEST_SERVED)
    await asyncio.to_thread(commands.upgrade, "head")
    migrating_s = time.monotonic() - started
    await asyncio.sleep(1.5)
    stop.set()
    placed, failures = await load
    longest_lock_s = await locks
    assert failures == []
    assert placed > 0
    assert longest_lock_s < float(lock_timeout().removesuffix("s")), (longest_lock_s, migrating_s)
    conn = await asyncpg.connect(database_url(ORDER, driver="postgresql"))
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head
        nulls = await conn.fetchval("SELECT count(*) FROM orders WHERE source_service IS NULL")
        validated = await conn.fetchval(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'ck_orders_source_service_not_null'"
        )
    finally:
        await conn.close()
    assert (nulls, validated) == (0, True)


@contextlib.contextmanager
def _scratch_database() -> Iterator[str]:
    name = f"order_migrations_{uuid.uuid4().hex[:10]}"
    postgres.psql_admin(f"CREATE DATABASE {name} OWNER {ORDER.role}")
    url = database_url(ORDER).rsplit("/", 1)[0] + f"/{name}"
    previous = os.environ.get("ORDER_DATABASE_URL")
    os.environ["ORDER_DATABASE_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("ORDER_DATABASE_URL", None)
        else:
            os.environ["ORDER_DATABASE_URL"] = previous
        postgres.psql_admin(f"DROP DATABASE {name} WITH (FORCE)")


async def _fetchval(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_every_order_migration_goes_down_and_up_again() -> None:
    with _scratch_database() as url:
        commands = _commands()  # built while ORDER_DATABASE_URL names the scratch database
        revisions = [revision for _, revision in migration_lint.revisions(commands)]
        commands.upgrade("head")
        asyncio.run(_fetchval(url, INSERT_ORDER))
        for below in reversed(revisions[:-1]):
            commands.downgrade("-1")
            assert asyncio.run(_fetchval(url, "SELECT version_num FROM alembic_version")) == below
            if below >= "order_0003":  # orders exists: below the contract, the row has created_by_service back
                column = "source_service" if below >= "order_0007" else "created_by_service"
                assert asyncio.run(_fetchval(url, f"SELECT {column} FROM orders")) == "checkout", below
        commands.downgrade("base")
        assert asyncio.run(_fetchval(url, "SELECT to_regclass('orders')::text")) is None
        commands.upgrade("head")
        assert asyncio.run(_fetchval(url, "SELECT version_num FROM alembic_version")) == revisions[-1]


INSERT_ORDER = (
    "INSERT INTO orders (order_number, customer_id, total_amount, source_service) VALUES ('RT-1', 'c', 1, 'checkout')"
)
