"""The placement's statements (the read models' lookup and ``_PLACE``, or both in one) on asyncpg's own connection.

SQLAlchemy's ``execute`` of a ``text()`` statement costs ~200 us of CPU more than asyncpg's ``fetch`` of the
same SQL on the same connection (the execution context, the adapter's cursor, the greenlet hop; even
``exec_driver_sql`` saves only ~30 us of it): 340 against 130 us for the lookup in a microbenchmark, and
an order sends two statements. In autocommit (``apps/common/db.py`` ``use_autocommit``) each statement
commits on its own whichever way it is sent, so the driver's connection under the request's session runs
it exactly as the session would: same SQL (compiled once by the session's dialect), same connection,
same parameters. In a transaction (the saga's placement of a checkout's order) the session sends it: the
session owns the transaction.

Errors: asyncpg's own reach the app's handlers, which tell an outage (503) or a refused value (400) by
its SQLSTATE as they do for the consumers' driver statements (``apps/common/error_handlers.py``); an
integrity violation is raised as SQLAlchemy's ``IntegrityError``, as the session raised it (the
Idempotency-Key race, a 409 otherwise). A connection that died stays the pool's to replace: it is
checked at every checkout (``apps/common/db.py``).

Cheaper still (``pooled_connection``): the placement checks a connection out of the session's pool itself
and sends every statement of its own on it, so the session never connects at all. A session's first
statement costs its connection, a session transaction and an autocommit switch (~430 us of CPU more than a
bare checkout of the same pool, measured: 690 against 260 us per checkout, statement and return); the
pool's checkout rules (idle expiry, a closed connection replaced, the pool metrics) apply to both alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, cast

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from apps.common.db import in_autocommit
from apps.common.errors import DependencyUnavailable, FieldProblem, NotFound

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.engine import CursorResult, Dialect
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["DriverStatement", "may_be_mid_operation", "pooled_connection"]

_POOLED: Final = "apps.order.driver.pooled"


@asynccontextmanager
async def pooled_connection(session: AsyncSession) -> AsyncIterator[None]:
    """Within this block the session's driver statements run on a connection of the session's pool, checked
    out here and returned at the end; each commits on its own (no transaction is opened on it). Statements
    sent through the session itself still take the session's own connection: keep them out of the block."""
    bind = session.bind
    if not isinstance(bind, AsyncEngine):  # a session bound to a connection: the session sends them
        yield
        return
    fairy = await greenlet_spawn(bind.sync_engine.raw_connection)
    session.info[_POOLED] = (fairy, bind.dialect)
    try:
        yield
    except BaseException as error:
        if may_be_mid_operation(error):
            # Closed, never handed out again: the session's connection would be invalidated by SQLAlchemy,
            # this one only by us (CI: a connection cut off as PostgreSQL was killed went back to the pool
            # mid-operation, and the next order on it failed with InternalClientError, a 500).
            await greenlet_spawn(fairy.invalidate, error)
        raise
    finally:
        del session.info[_POOLED]
        await greenlet_spawn(fairy.close)


def may_be_mid_operation(error: BaseException) -> bool:
    """Whether a connection that raised ``error`` may not be ready for another statement: anything but our
    own refusal between statements (a bad field, an unknown id, a dependency down) or an error the server
    answered with (the protocol is idle again after it), unless that answer ends the session (08, 57)."""
    if isinstance(error, FieldProblem | NotFound | DependencyUnavailable):
        return False
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, asyncpg.PostgresError):
            return str(cause.sqlstate or "")[:2] in ("08", "57")
        cause = cause.__cause__
    return True


class DriverStatement:
    """A ``text()`` statement, sent on the driver's connection in a ``pooled_connection`` block or when the
    session is in autocommit, through the session otherwise (a statement without rows returns none)."""

    def __init__(self, statement: TextClause) -> None:
        self.statement = statement
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    async def fetch(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
        """The statement's rows, each read by column name."""
        pooled = session.info.get(_POOLED)
        if pooled is not None:
            fairy, dialect = pooled
            return await self._send(fairy.driver_connection, dialect, params)
        if not in_autocommit(session):
            result = cast("CursorResult[Any]", await session.execute(self.statement, params))
            return cast("Sequence[Mapping[str, Any]]", result.mappings().all() if result.returns_rows else [])
        connection = await session.connection()
        return await self._send((await connection.get_raw_connection()).driver_connection, connection.dialect, params)

    async def _send(
        self, driver: asyncpg.Connection | None, dialect: Dialect, params: Mapping[str, Any]
    ) -> Sequence[Mapping[str, Any]]:
        sql, names = self._sql(dialect)
        if driver is None:  # a connection the pool invalidated under us
            raise sa_exc.InterfaceError(sql, None, asyncpg.InterfaceError("connection is closed"))
        try:
            rows: Sequence[Mapping[str, Any]] = await driver.fetch(sql, *(params[name] for name in names))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise sa_exc.IntegrityError(sql, None, error) from error
        except asyncpg.UndefinedTableError as error:  # as the session raised it (the read models' fallback)
            raise sa_exc.ProgrammingError(sql, None, error) from error
        return rows

    def _sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The SQL the session would send ($1, $2, ... each parameter once) and the parameters' order."""
        if self._compiled is None:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled = (str(compiled), tuple(compiled.positiontup or ()))
        return self._compiled
