"""Every service's migrations go down and up again: a scratch database per service goes from nothing to
head, down to nothing, and back to head (the order service's, revision by revision and under load, are
in test_order_migrations.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.db import alchemy_config
from apps.common.migrations_env import MIGRATION_ADVISORY_LOCK
from apps.common.topology import BY_NAME, SERVICES, ServiceSpec, database_url
from infra import migration_lint, postgres
from infra.paths import REPO

pytestmark = pytest.mark.usefixtures("stack")

WITH_MIGRATIONS = [spec for spec in SERVICES if (REPO / "apps" / spec.name / "migrations").is_dir()]


@contextlib.contextmanager
def scratch_database(spec: ServiceSpec) -> Iterator[str]:
    """A database of the service's own role, named by ``<NAME>_DATABASE_URL`` while the block runs."""
    name = f"{spec.name}_round_trip_{uuid.uuid4().hex[:10]}"
    postgres.psql_admin(f"CREATE DATABASE {name} OWNER {spec.role}")
    url = database_url(spec).rsplit("/", 1)[0] + f"/{name}"
    variable = f"{spec.name.upper()}_DATABASE_URL"
    previous = os.environ.get(variable)
    os.environ[variable] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous
        postgres.psql_admin(f"DROP DATABASE {name} WITH (FORCE)")


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows} - {"alembic_version"}
    finally:
        await conn.close()


@pytest.mark.parametrize("spec", WITH_MIGRATIONS, ids=lambda spec: spec.name)
def test_migrations_go_down_to_nothing_and_up_again(spec: ServiceSpec) -> None:
    with scratch_database(spec) as url:
        commands = AlembicCommands(sqlalchemy_config=alchemy_config(spec))
        head = [revision for _, revision in migration_lint.revisions(commands)][-1]
        commands.upgrade("head")
        at_head = asyncio.run(tables(url))
        assert at_head, "head creates tables"
        commands.downgrade("base")
        assert asyncio.run(tables(url)) == set(), "every downgrade removes what its upgrade made"
        commands.upgrade("head")
        assert asyncio.run(tables(url)) == at_head
        conn_version = asyncio.run(_version(url))
        assert conn_version == head


async def _version(url: str) -> str:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
    finally:
        await conn.close()


def test_a_migration_run_waits_for_the_one_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs on one database never interleave: the second waits on the first's advisory lock (held here, as a
    run in progress would hold it), however long past lock_timeout, then migrates from where the first left it."""
    # The migrations' lock_timeout at 1 s instead of the default 5 (MIGRATION_LOCK_TIMEOUT): the hold outlasts
    # it as before, in a third of the time.
    monkeypatch.setenv("MIGRATION_LOCK_TIMEOUT", "1s")
    spec = BY_NAME["catalog"]
    with scratch_database(spec) as url:
        commands = AlembicCommands(sqlalchemy_config=alchemy_config(spec))
        head = [revision for _, revision in migration_lint.revisions(commands)][-1]

        async def hold_the_lock_then_release(started: threading.Event) -> set[str]:
            conn = await asyncpg.connect(url.replace("+asyncpg", ""))
            try:
                await conn.execute(f"SELECT pg_advisory_lock({MIGRATION_ADVISORY_LOCK})")
                started.set()
                # Counted from when the run is queued on the lock (its start-up may take longer than
                # lock_timeout on a loaded machine), and longer than the migrations' lock_timeout (1 s here):
                # the waiting run must not give up.
                queued = (
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                deadline = time.monotonic() + 60
                while not await conn.fetchval(queued):
                    assert time.monotonic() < deadline, "the second run never waited on the lock"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(2)
                seen_while_held = await tables(url)
                await conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_ADVISORY_LOCK})")
                return seen_while_held
            finally:
                await conn.close()

        started = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            holder = pool.submit(asyncio.run, hold_the_lock_then_release(started))
            assert started.wait(10)
            commands.upgrade("head")  # blocks until the holder lets go
            assert holder.result() == set(), "nothing migrated while another run held the lock"
        assert asyncio.run(_version(url)) == head
