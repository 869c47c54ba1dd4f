"""Direct asyncpg connections to a service database as its own role."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from apps.common.topology import BY_NAME, database_url


async def connect(service: str) -> asyncpg.Connection:
    url = database_url(BY_NAME[service], driver="postgresql")
    return await asyncpg.connect(url)


async def fetch(service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """One query on ``service``'s database on a connection of its own."""
    conn = await connect(service)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def db_fixture(service: str) -> Callable[..., Any]:
    """A function-scoped `db` fixture: a connection to ``service``'s database, closed after the test."""

    @pytest.fixture
    async def db() -> AsyncIterator[asyncpg.Connection]:
        conn = await connect(service)
        try:
            yield conn
        finally:
            await conn.close()

    return db


@contextlib.asynccontextmanager
async def outbox_fails_at_commit(
    conn: asyncpg.Connection, field: str, value: str, *, condition: str | None = None
) -> AsyncIterator[None]:
    """Make this database refuse, AT COMMIT, any outbox row whose event_data[field] equals value (or, given
    ``condition``, a SQL test of NEW: for a field the event carries sealed, apps/common/personal.py).

    A deferred constraint trigger runs at COMMIT, so the flush, add_event and every INSERT succeed first:
    exactly the case an autocommit-after-response handler would have answered with a 2xx. The function and
    trigger have their own names, so concurrent tests are unaffected.
    """
    name = f"fail_outbox_{uuid.uuid4().hex}"
    await conn.execute(
        f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {condition or f"NEW.event_data->>'{field}' = '{value}'"} THEN
                RAISE EXCEPTION 'outbox refused at commit (test)';
            END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER {name} AFTER INSERT ON event_store
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {name}();
        """
    )
    try:
        yield
    finally:
        await conn.execute(f"DROP TRIGGER IF EXISTS {name} ON event_store; DROP FUNCTION IF EXISTS {name}();")
