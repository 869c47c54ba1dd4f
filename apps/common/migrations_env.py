"""The body of every service's Alembic env.py (online and offline), so it is written once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from advanced_alchemy.base import AdvancedDeclarativeBase
from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import AsyncEngine, async_engine_from_config, create_async_engine

from apps.common.settings import DAY_S, Settings, env
from outbox.config import duration_s as duration_s  # read here too (test_order_migrations)

if TYPE_CHECKING:
    from advanced_alchemy.alembic.commands import AlembicCommandConfig
    from sqlalchemy.engine import Connection


@dataclass(frozen=True, slots=True)
class MigrationSettings(Settings):
    lock_timeout: str = env("MIGRATION_LOCK_TIMEOUT", "5s")

    def __post_init__(self) -> None:
        # Checked here, not left to PostgreSQL: the value is written into the SET statement. At most a day
        # (DAY_S), as every duration the services read; PostgreSQL's own limit is ~24.8 days.
        try:
            seconds = duration_s(self.lock_timeout)
        except ValueError:
            raise self.invalid("lock_timeout", "not a duration such as 5s, 500ms or 1min (0: no limit)") from None
        if seconds > DAY_S:
            raise self.invalid("lock_timeout", f"not a duration of at most {DAY_S} s (a day)")


def lock_timeout() -> str:
    """How long a migration waits for a lock before it fails instead of queueing traffic behind it
    (infra/migration_lint.py refuses SQL that takes a blocking lock without one). Read at each run's start
    (a test sets it for one run); a bad value stops the run naming ``MIGRATION_LOCK_TIMEOUT``."""
    return MigrationSettings.from_env().lock_timeout


# One migration run at a time per database: two runs at once (two deploys, or a deploy and a test's downgrade)
# interleave their DDL; a CREATE INDEX CONCURRENTLY of one deadlocked with an ALTER of the other and left a
# database half-downgraded (an invalid index taking inserts, an old constraint back). PostgreSQL scopes an
# advisory lock's key to the current database, so one constant key serves every service.
MIGRATION_ADVISORY_LOCK = 0x6F7574626F78  # "outbox"


def run() -> None:
    timeout = lock_timeout()
    config = cast("AlembicCommandConfig", context.config)
    metadata = AdvancedDeclarativeBase.__metadata_registry__.get(config.bind_key)
    options: dict[str, Any] = {
        "target_metadata": metadata,
        "compare_type": True,
        "version_table": config.version_table_name,
        # Each migration commits on its own: an autocommit block (CREATE INDEX CONCURRENTLY, a batched
        # backfill) commits what precedes it, which in one run-wide transaction lost the version row's
        # earlier updates (a downgrade from order_0008 through 0007's backfill failed on it).
        "transaction_per_migration": True,
    }
    if context.is_offline_mode():
        context.configure(url=config.db_url, literal_binds=True, **options)
        with context.begin_transaction():
            context.execute(f"SET lock_timeout = '{timeout}'")
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            # Session-wide, so it also holds in a migration's autocommit blocks (CREATE INDEX CONCURRENTLY).
            context.execute(f"SET lock_timeout = '{timeout}'")
            context.run_migrations()
            context.execute("RESET lock_timeout")

    async def online() -> None:
        engine = cast("AsyncEngine | None", config.engine) or async_engine_from_config(
            {"sqlalchemy.url": config.db_url}, prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        # Held by a session of its own (not the services' pool: its idle_session_timeout would end a session
        # that waits idle through a long backfill), in autocommit: it waits for a run in progress before
        # lock_timeout applies, keeps no transaction open for a CREATE INDEX CONCURRENTLY to wait on, and is
        # released whatever the migrations' own transactions end in.
        guard_engine = create_async_engine(engine.url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
        async with guard_engine.connect() as guard:
            await guard.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_ADVISORY_LOCK})")
            try:
                async with engine.connect() as connection:
                    await connection.run_sync(do_run)
            finally:
                await guard.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_ADVISORY_LOCK})")
        await guard_engine.dispose()
        await engine.dispose()

    asyncio.run(online())
