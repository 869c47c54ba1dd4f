"""The runtime's database connection: one connection and one session kept from batch to batch, and the
driver's connection underneath them for the runtime's own statements.

At the stack's rates nearly every batch holds one event, so what a batch costs besides its handler is
what a consumer spends per event. Opening a session from the factory for every batch (a pool checkout and
checkin, a new Session with its transaction objects) and sending the inbox claim through the session's
execute cost 1.9-2.2 ms of CPU per one-event batch of customer-stats (claim, upsert, commit); with the
claim on asyncpg's own connection, in the same transaction, and one connection and one session kept,
1.4-1.7 ms. Handlers still get an AsyncSession in that transaction: the claim, the handlers and the
commit stay one database transaction.

A connection that failed is dropped (its session closed, the connection discarded) and the next batch
opens a new one, so a PostgreSQL restart costs a reconnect, as the pool's own invalidation did before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from outbox.errors import RetryableError
from outbox.retry import is_retryable
from outbox.statements import DRIVER_KEY

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["PinnedSession"]

log = logging.getLogger("outbox.runtime")


class PinnedSession:
    """One AsyncSession bound to one connection for as long as both work; a transaction per batch."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory
        bind = session_factory.kw.get("bind")
        if not isinstance(bind, AsyncEngine):  # what outbox.runner and the benchmarks make
            raise TypeError("the consumer's session factory must be bound to an AsyncEngine")
        self._engine = bind
        self._connection: AsyncConnection | None = None
        self._session: AsyncSession | None = None
        self._driver: Any = None  # asyncpg.Connection under self._connection
        self._adapter: Any = None  # SQLAlchemy's asyncpg adapter around it: it begins and commits

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[tuple[AsyncSession, Any]]:
        """A session in a new transaction, and the driver's connection in that same transaction; committed
        when the block ends, rolled back if it raises.

        The transaction is begun and, unless the session was used, committed on SQLAlchemy's asyncpg adapter
        itself: most batches send only driver statements (the claim, outbox.statements), and the session's
        own begin, connection, commit and close cost about a third of a one-event batch's CPU. A handler that
        does use the session (a query, an add, a savepoint) starts the session's transaction on the adapter's,
        which is already begun (no second BEGIN); the session then flushes and commits it, as before."""
        if self._driver is not None and self._driver.is_closed():  # the server ended it between batches
            await self.discard(broken=True)
        session = await self._open()
        try:
            if not self._adapter._started:  # BEGIN, through the adapter, so a session that joins sees it begun
                await self._adapter._start_transaction()
            session.info[DRIVER_KEY] = self._driver  # handlers' statements (outbox.statements)
            yield session, self._driver
            if _used(session):
                await session.commit()  # flushes what the handlers left pending, then COMMIT
            else:
                await self._adapter._commit_and_discard()
        except BaseException as exc:
            lost = self._driver is not None and self._driver.is_closed()
            await self.discard(broken=True)
            # The driver's own errors reach us unwrapped (the claim), some without a SQLSTATE ("connection is
            # closed"): a connection that died under the batch is transient whatever the error says.
            if lost and isinstance(exc, Exception) and not is_retryable(exc):
                raise RetryableError(f"the database connection was lost: {exc!r}") from exc
            raise
        session.info.pop(DRIVER_KEY, None)
        if _used(session):  # a fresh identity map for the next batch, as a new session had
            await session.close()

    async def _open(self) -> AsyncSession:
        if self._session is not None:
            return self._session
        connection = await self._engine.connect()
        try:
            raw = await connection.get_raw_connection()
            self._adapter, self._driver = raw.dbapi_connection, raw.driver_connection
            if not hasattr(self._adapter, "_start_transaction"):  # not the asyncpg dialect: no pinning
                raise TypeError(f"{type(self._adapter).__name__} is not SQLAlchemy's asyncpg adapter")
        except BaseException:
            await connection.close()
            raise
        self._connection, self._session = connection, self.session_factory(bind=connection)
        return self._session

    async def discard(self, *, broken: bool = False) -> None:
        """Drop the session and its connection (``broken``: after a failure; else at shutdown, back to the
        pool); the next batch opens a new one."""
        session, connection = self._session, self._connection
        self._session = self._connection = self._driver = self._adapter = None
        if session is not None:
            session.info.pop(DRIVER_KEY, None)
            with contextlib.suppress(Exception):
                await session.close()
        if connection is not None:
            try:
                # After a failure the driver may be mid-protocol or dead: never back to the pool.
                await (connection.invalidate() if broken else connection.close())
            except Exception as exc:  # already closed by the failure: nothing left to release
                log.debug("discarding the consumer's connection: %r", exc)


def _used(session: AsyncSession) -> bool:
    """Whether a handler used the session in this batch: began its transaction (any query, add or savepoint
    autobegins it), or left objects in it."""
    sync = session.sync_session
    return sync.in_transaction() or bool(sync.identity_map)
