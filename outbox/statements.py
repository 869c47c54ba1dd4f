"""A handler's set-based statement, sent on the driver's connection under the runtime's session.

At the stack's rates a batch holds one or two events, so a handler's statement is paid per event, and
SQLAlchemy's ``execute`` of a ``text()`` costs ~200 us of CPU more than asyncpg's ``fetch`` of the same SQL
on the same connection (apps/order/driver.py measured it for the order API). The runtime's session and the
driver's connection under it are in one transaction (outbox.connection: the inbox claim goes that way too),
so the statement is the same SQL, in the same transaction, with the same parameters, whichever way it is
sent. The runtime puts its driver connection in the session's ``info``; a session that is not the
runtime's (a test, a script), that holds ORM changes not flushed yet (the session would flush them
first) or that is in a savepoint (a failed batch isolated one event at a time) sends the statement itself.

Errors: asyncpg's own, unwrapped, as from the claim: outbox.retry tells transient ones by SQLSTATE and the
runtime isolates and dead-letters the others as it does a session's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["DRIVER_KEY", "Row", "Statement"]

# session.info key of the asyncpg connection in the runtime's transaction (set by outbox.connection).
DRIVER_KEY: Final = "outbox.driver"
_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class Statement:
    """A ``text()`` statement a consumer's handler sends once per batch."""

    def __init__(self, statement: TextClause) -> None:
        self.statement = statement
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    async def fetch(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The statement's rows, as tuples (column order)."""
        driver = _driver(session)
        if driver is None:
            return list((await session.execute(self.statement, params)).tuples())
        sql, names = self.compiled()
        rows: Sequence[Sequence[Any]] = await driver.fetch(sql, *[params[name] for name in names])
        return rows

    async def rows(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Any]:
        """The statement's rows, each read by attribute (column name) as SQLAlchemy's rows are."""
        driver = _driver(session)
        if driver is None:
            return (await session.execute(self.statement, params)).all()
        sql, names = self.compiled()
        return [Row(record) for record in await driver.fetch(sql, *[params[name] for name in names])]

    async def execute(self, session: AsyncSession, params: Mapping[str, Any]) -> None:
        driver = _driver(session)
        if driver is None:
            await session.execute(self.statement, params)
            return
        sql, names = self.compiled()
        await driver.execute(sql, *[params[name] for name in names])

    def compiled(self) -> tuple[str, tuple[str, ...]]:
        """The SQL as the session sends it ($1, $2, ... each parameter once) and the parameters' order."""
        if self._compiled is None:
            compiled = self.statement.compile(dialect=_DIALECT)
            self._compiled = (str(compiled), tuple(compiled.positiontup or ()))
        return self._compiled


class Row(dict[str, Any]):
    """A driver's row read by attribute, as SQLAlchemy's Row is."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _driver(session: AsyncSession) -> Any:
    info = getattr(session, "info", None)  # None: a stand-in for a session (unit tests)
    driver = info.get(DRIVER_KEY) if info is not None else None
    if driver is None:
        return None
    sync = session.sync_session
    if sync.new or sync.dirty or sync.deleted:  # the session would flush these before its statement
        return None
    # In a savepoint (the runtime isolating a failed batch one event at a time) the session sends it: a
    # driver statement that failed there left the whole transaction aborted, its savepoint not rolled back.
    if sync.in_nested_transaction():
        return None
    return driver
