"""The request's session closer (apps/common/db.py ``session_closer``) skips only a close that would do
nothing: a session that began no transaction and holds no object. One that did is closed as before."""

from __future__ import annotations

from inspect import isawaitable
from typing import Any

import pytest
from litestar.datastructures import State
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from apps.common.db import litestar_alchemy_config, never_used
from apps.common.topology import BY_NAME
from apps.order.models import Order

pytestmark = pytest.mark.usefixtures("stack")


async def _closed_by_the_closer(use: Any) -> tuple[AsyncSession, bool, int]:
    """A request's session used by ``use``, then the answer's start: (session, skipped?, connections out)."""
    config = litestar_alchemy_config(BY_NAME["order"])
    state = State({config.session_maker_app_state_key: config.create_session_maker()})
    scope: Any = {"state": {}}
    session = config.provide_session(state, scope)
    await use(session)
    skipped = never_used(session)
    closer = config.before_send_handler
    assert callable(closer)  # ours (apps.common.db), not one of advanced-alchemy's named ones
    closing = closer({"type": "http.response.start", "status": 200, "headers": []}, scope)
    assert isawaitable(closing)
    await closing
    pool = config.get_engine().pool
    out = pool.checkedout()  # type: ignore[attr-defined]
    await config.get_engine().dispose()
    return session, skipped, out


async def test_an_unused_session_is_not_closed_and_holds_nothing() -> None:
    async def nothing(session: AsyncSession) -> None:
        return None

    session, skipped, out = await _closed_by_the_closer(nothing)
    assert skipped and out == 0 and not session.in_transaction()


async def test_a_session_that_ran_a_statement_is_closed_and_its_connection_returned() -> None:
    async def query(session: AsyncSession) -> None:
        await session.execute(text("SELECT 1"))

    session, skipped, out = await _closed_by_the_closer(query)
    assert not skipped and out == 0 and not session.in_transaction()


async def test_a_session_holding_rows_after_its_commit_is_closed_and_lets_them_go() -> None:
    loaded: list[Order] = []

    async def read_and_commit(session: AsyncSession) -> None:
        loaded.extend((await session.scalars(select(Order).limit(1))).all())
        await session.commit()

    _, skipped, out = await _closed_by_the_closer(read_and_commit)
    assert out == 0
    if loaded:  # the order table is never empty on a stack that ran anything; if it is, nothing is held
        assert not skipped and inspect(loaded[0]).detached
