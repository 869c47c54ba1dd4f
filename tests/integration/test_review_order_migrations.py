"""Review (session 29, W) of 09163bb: order_0017/0018 must be runnable again after a run that failed part way.

Both migrations commit part of their work before their last step (an autocommit block commits what precedes
it and each statement inside it): order_0017 its ADD COLUMN before the CREATE INDEX CONCURRENTLY, order_0018
its CHECK (customer_id IS NOT NULL), added and validated, before the ALTER TABLE that swaps the primary key.
A run that fails after that part (the swap's ACCESS EXCLUSIVE or the CONCURRENTLY build's wait for older
transactions past the migrations' lock_timeout under traffic: what lock_timeout is there for) leaves the
version where it was, and the run the operator starts again must not fail on what the first one left.

The failure is forced here at the migration's last lock, the version row's update (held FOR UPDATE by the
test with MIGRATION_LOCK_TIMEOUT 1s): it leaves exactly what a lock timeout of the swap (0018) or of the
concurrent build (0017, apart from the index, which IF NOT EXISTS covers) leaves. On a scratch database."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

from tests.integration.test_order_migrations import _commands, _fetchval, _scratch_database

pytestmark = pytest.mark.usefixtures("stack")


@contextmanager
def _held(url: str, isolation: str, sql: str) -> Iterator[None]:
    """A transaction of another session (in a thread of its own) that ran ``sql`` and stays open while the
    block runs, with MIGRATION_LOCK_TIMEOUT 1s."""
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            async with conn.transaction(isolation=isolation):
                await conn.execute(sql)
                locked.set()
                await asyncio.to_thread(release.wait)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    previous = os.environ.get("MIGRATION_LOCK_TIMEOUT")
    os.environ["MIGRATION_LOCK_TIMEOUT"] = "1s"
    try:
        assert locked.wait(10)
        yield
    finally:
        if previous is None:
            os.environ.pop("MIGRATION_LOCK_TIMEOUT", None)
        else:
            os.environ["MIGRATION_LOCK_TIMEOUT"] = previous
        release.set()
        holder.join(10)


VERSION_ROW = "SELECT version_num FROM alembic_version FOR UPDATE"


@pytest.mark.parametrize(("start", "failing"), [("order_0016", "order_0017"), ("order_0017", "order_0018")])
def test_a_migration_that_failed_after_its_committed_part_runs_again(start: str, failing: str) -> None:
    with _scratch_database() as url:
        _commands().upgrade(start)
        with _held(url, "read_committed", VERSION_ROW), pytest.raises(Exception, match="lock timeout"):
            _commands().upgrade(failing)
        assert asyncio.run(_fetchval(url, "SELECT version_num FROM alembic_version")) == start
        _commands().upgrade(failing)  # the operator's second run (a process of its own), nothing held now
        assert asyncio.run(_fetchval(url, "SELECT version_num FROM alembic_version")) == failing


def test_an_expand_whose_concurrent_build_timed_out_runs_again_and_leaves_a_valid_index() -> None:
    """CREATE INDEX CONCURRENTLY waits for every transaction of the database with an older snapshot; past
    lock_timeout it fails and leaves the index INVALID (not used by the lookups by (customer_id, key), and
    refused by order_0018's PRIMARY KEY USING INDEX). IF NOT EXISTS then skips it on the next run."""
    with _scratch_database() as url:
        _commands().upgrade("order_0016")
        with _held(url, "repeatable_read", "SELECT 1"), pytest.raises(Exception, match="lock timeout"):
            _commands().upgrade("order_0017")
        _commands().upgrade("order_0017")
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'uq_idempotency_keys_customer_key'::regclass"
        assert asyncio.run(_fetchval(url, valid)) is True
        _commands().upgrade("head")
