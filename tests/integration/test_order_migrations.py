"""Order migrations under load, and every order migration down to nothing and up again.

Under load: the order service takes a steady stream of orders on 4 connections while the live order_db goes
down to the oldest revision its code serves (``OLDEST_SERVED``) and up to head again. No request may fail, and
no ACCESS EXCLUSIVE lock on orders may be held longer than the migrations' lock_timeout. The code at head
names ``idempotency_keys.customer_id`` in every order's statement (order_0017), so below that revision every
order would fail: a deployment never takes a database below what its running code needs. While the oldest served is
head itself (since order_0019: the code at head names each newest column) this moves nothing: it is the keyed
load's check (an Idempotency-Key with every order) for the next migration the code at head also runs on. The
order_0018 key swap (session 28) and the expand/contract of order_0005-0007 (session 17) were run under it while
they were the newest change; their steps are still run both ways by the round trip below.

An expand migration the code at head needs is run under load the way a deployment runs it, while the release
before still writes: order_0020 (event_store.min_reader_version) on a scratch database taking that release's
event writes. Round trip: a scratch database of its own goes from nothing to head, down to nothing revision by
revision, and up again, with an order row that keeps its source service throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.db import alchemy_config
from apps.common.migrations_env import duration_s, lock_timeout
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
# The oldest schema the order code at head runs on: every order's outbox row names
# event_store.correlation_id (order_0021; min_reader_version since 0020; its lookup reads
# order_known_customers.erased since 0019, idempotency_keys.customer_id came in 0017, data_access_log in 0009).
OLDEST_SERVED = "order_0021"


def lock_bound_s() -> float:
    """The migrations' lock_timeout in seconds, read as the migrations read it (``500ms``, ``1min``); ``0`` is
    no limit, so no hold is too long."""
    return duration_s(lock_timeout()) or math.inf


def _commands() -> AlembicCommands:
    return AlembicCommands(sqlalchemy_config=alchemy_config(ORDER))


async def _place_orders(stop: asyncio.Event, customers: list[str], product: str) -> tuple[int, list[str]]:
    placed, failures = 0, []
    async with api_client(base_url=service_url("order"), timeout=30) as http:

        async def client(index: int) -> None:
            nonlocal placed
            while not stop.is_set():
                body = {"customer_id": customers[index], "items": [{"product_id": product, "quantity": 1}]}
                response = await http.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
                if response.status_code == 201:
                    placed += 1
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                await asyncio.sleep(PAUSE_S)

        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return placed, failures


async def _watch_exclusive_locks(
    stop: asyncio.Event, url: str | None = None, tables: tuple[str, ...] = ("orders", "idempotency_keys")
) -> float:
    """The longest an ACCESS EXCLUSIVE lock on one of ``tables`` (of the live order_db, or the database at
    ``url``) was seen held without a break (sampled every 20 ms)."""
    order_db = await asyncpg.connect((url or database_url(ORDER, driver="postgresql")).replace("+asyncpg", ""))
    try:
        database, relations = await order_db.fetchrow(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), "
            "ARRAY(SELECT CAST(CAST(t AS regclass) AS oid) FROM unnest(CAST($1 AS text[])) AS t)",
            list(tables),
        )
    finally:
        await order_db.close()
    conn = await asyncpg.connect(monitoring.monitoring_dsn())
    held: dict[int, float] = {}  # pid -> since when it holds the lock, in this unbroken run of samples
    longest = 0.0
    try:
        while not stop.is_set():
            pids = await conn.fetch(
                "SELECT pid FROM pg_locks WHERE database = $1 AND relation = ANY($2) "
                "AND mode = 'AccessExclusiveLock' AND granted",
                database,
                relations,
            )
            now = time.monotonic()
            held = {pid: held.get(pid, now) for (pid,) in pids}
            longest = max([longest, *(now - since for since in held.values())])
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return longest


async def test_migrations_down_to_the_oldest_served_and_up_run_under_load_without_a_failed_request() -> None:
    if migration_lint.revisions(_commands())[-1][1] == OLDEST_SERVED:
        # A no-op round trip would pass while testing nothing: the code at head needs head's schema, so
        # nothing may be migrated under its load until the next order migration that it does not need.
        # The newest migration runs under the previous release's writes in this file's scratch test instead.
        pytest.skip(f"the code at head needs {OLDEST_SERVED}, the newest revision: nothing to migrate under load")
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
    assert longest_lock_s < lock_bound_s(), (longest_lock_s, migrating_s)
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
        asyncio.run(_fetchval(url, INSERT_KEYS))
        for below in reversed(revisions[:-1]):
            commands.downgrade("-1")
            assert asyncio.run(_fetchval(url, "SELECT version_num FROM alembic_version")) == below
            if below == "order_0017":  # one key per row again: the earliest customer's kept
                assert asyncio.run(_fetchval(url, "SELECT array_agg(customer_id) FROM idempotency_keys")) == ["c"]
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
# Two customers' rows under one key (the second a minute younger), as the code at head writes them.
INSERT_KEYS = (
    "INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, created_at) "
    "SELECT t.customer_id, 'K', 'h', o.id, now() - t.age FROM orders o, "
    "(VALUES ('c', interval '2 minutes'), ('d', interval '1 minute')) AS t(customer_id, age)"
)


def test_the_contract_gives_keys_written_without_a_customer_their_orders_customer() -> None:
    """A key the release before order_0017 wrote (no customer_id) gets its order's customer in order_0018,
    which then makes (customer_id, key) the primary key."""
    with _scratch_database() as url:
        commands = _commands()
        commands.upgrade("order_0017")
        asyncio.run(_fetchval(url, INSERT_ORDER))
        asyncio.run(
            _fetchval(
                url,
                "INSERT INTO idempotency_keys (key, request_hash, order_id) SELECT 'old', 'h', id FROM orders",
            )
        )
        commands.upgrade("head")
        assert asyncio.run(_fetchval(url, "SELECT customer_id FROM idempotency_keys WHERE key = 'old'")) == "c"
        primary = (
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_index i CROSS JOIN unnest(i.indkey) WITH ORDINALITY "
            "AS k(attnum, n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = 'idempotency_keys'::regclass AND i.indisprimary"
        )
        assert asyncio.run(_fetchval(url, primary)) == ["customer_id", "key"]


def test_an_erased_customers_tombstone_goes_with_the_column_and_comes_back_as_a_known_row() -> None:
    """order_0019 adds order_known_customers.erased (false for the rows there); its downgrade deletes the
    tombstones (the code before it reads any row as a known customer) and keeps the others."""
    with _scratch_database() as url:
        commands = _commands()
        commands.upgrade("order_0018")
        asyncio.run(_fetchval(url, "INSERT INTO order_known_customers (customer_id) VALUES ('kept'), ('erased')"))
        commands.upgrade("order_0019")
        assert asyncio.run(_fetchval(url, "SELECT bool_or(erased) FROM order_known_customers")) is False
        asyncio.run(_fetchval(url, "UPDATE order_known_customers SET erased = true WHERE customer_id = 'erased'"))
        commands.downgrade("order_0018")
        assert asyncio.run(_fetchval(url, "SELECT array_agg(customer_id) FROM order_known_customers")) == ["kept"]
        commands.upgrade("head")
        assert asyncio.run(_fetchval(url, "SELECT count(*) FROM order_known_customers WHERE NOT erased")) == 1


# The release before order_0020 wrote each event so (outbox/writer.py at 72c5f2d): without min_reader_version.
RELEASE_BEFORE_0020_EVENT = """
    WITH next AS (
        INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version)
        VALUES ($1, 'order', 1)
        ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
        RETURNING version
    )
    INSERT INTO event_store
        (id, aggregate_id, aggregate_type, event_type, event_data, event_version, schema_version)
    SELECT $2, $1, 'order', 'order.placed', '{}'::jsonb, next.version, 1
    FROM next
"""
# Rows already in the outbox when the migration runs: enough that a rewrite of the table would hold its lock
# visibly longer than adding a column with a constant default does.
OUTBOX_ROWS = 20_000


async def _write_events_as_the_release_before(url: str, stop: asyncio.Event) -> tuple[list[float], list[str]]:
    """Events written on CLIENTS connections with the statement of the release before order_0020 until ``stop``:
    each commit's time (monotonic) and each failure."""
    committed: list[float] = []
    failures: list[str] = []

    async def client() -> None:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            aggregate = uuid.uuid4()
            while not stop.is_set():
                try:
                    await conn.execute(RELEASE_BEFORE_0020_EVENT, aggregate, uuid.uuid4())
                    committed.append(time.monotonic())
                except asyncpg.PostgresError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return committed, failures


async def test_order_0020_is_added_while_the_release_before_writes_events_without_a_failed_write() -> None:
    """The deployment's order: an expand migration runs while the release before it still writes. The code at
    head names event_store.min_reader_version, so the live test above cannot go below order_0020 (nor can the
    connectors, whose EventRouter reads the column); here a scratch database at order_0019 takes the release
    before's event writes on 4 connections while order_0020 is applied: none fails, its lock on event_store
    is held less than the migrations' lock_timeout, and what that release writes after it reads 1 (any reader)."""
    with _scratch_database() as url:
        commands = _commands()
        await asyncio.to_thread(commands.upgrade, "order_0019")
        await _fetchval(
            url,
            "INSERT INTO event_store (aggregate_id, aggregate_type, event_type, event_data, event_version) "
            "SELECT gen_random_uuid(), 'order', 'order.placed', '{}'::jsonb, 1 "
            f"FROM generate_series(1, {OUTBOX_ROWS})",
        )
        stop = asyncio.Event()
        writes = asyncio.create_task(_write_events_as_the_release_before(url, stop))
        locks = asyncio.create_task(_watch_exclusive_locks(stop, url, ("event_store",)))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await asyncio.to_thread(commands.upgrade, "order_0020")
        migrated = time.monotonic()
        await asyncio.sleep(0.5)
        stop.set()
        committed, failures = await writes
        longest_lock_s = await locks
        assert failures == []
        assert any(at < started for at in committed) and any(at > migrated for at in committed)
        assert longest_lock_s < lock_bound_s(), (longest_lock_s, migrated - started)
        assert await _fetchval(url, "SELECT version_num FROM alembic_version") == "order_0020"
        readers = "SELECT array_agg(DISTINCT min_reader_version) FROM event_store"
        assert await _fetchval(url, readers) == [1]
        assert await _fetchval(url, "SELECT count(*) FROM event_store") == OUTBOX_ROWS + len(committed)
