"""The placement's two statements (the read models' lookup, ``_PLACE``) on asyncpg's own connection.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from sqlalchemy import exc as sa_exc

from apps.common.db import in_autocommit

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["DriverStatement"]


class DriverStatement:
    """A ``text()`` statement, sent on the driver's connection when the session is in autocommit."""

    def __init__(self, statement: TextClause) -> None:
        self.statement = statement
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    async def fetch(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
        """The statement's rows, each read by column name."""
        if not in_autocommit(session):
            return cast("Sequence[Mapping[str, Any]]", (await session.execute(self.statement, params)).mappings().all())
        connection = await session.connection()
        sql, names = self._sql(connection.dialect)
        driver = (await connection.get_raw_connection()).driver_connection
        if driver is None:  # a connection the pool invalidated under us
            raise sa_exc.InterfaceError(sql, None, asyncpg.InterfaceError("connection is closed"))
        try:
            rows: Sequence[Mapping[str, Any]] = await driver.fetch(sql, *(params[name] for name in names))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise sa_exc.IntegrityError(sql, None, error) from error
        return rows

    def _sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The SQL the session would send ($1, $2, ... each parameter once) and the parameters' order."""
        if self._compiled is None:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled = (str(compiled), tuple(compiled.positiontup or ()))
        return self._compiled
