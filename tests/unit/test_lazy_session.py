"""The request session made on first use (apps/common/db.py LazySession): bind and info answer without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.common.db import LazySession


class _Session:
    """Stands for an AsyncSession: its own info, one method."""

    def __init__(self) -> None:
        self.info: dict[Any, Any] = {"own": 1}

    async def rollback(self) -> str:
        return "rolled back"


def _lazy(made: list[_Session], engine: object) -> LazySession:
    def make() -> AsyncSession:
        made.append(_Session())
        return cast("AsyncSession", made[-1])

    maker: Callable[[], AsyncSession] = make
    return LazySession(cast("AsyncEngine", engine), maker)


def test_bind_and_info_need_no_session() -> None:
    made: list[_Session] = []
    engine = object()
    lazy = _lazy(made, engine)
    lazy.info["pooled"] = "connection"
    assert lazy.bind is engine
    assert lazy.info == {"pooled": "connection"}
    assert not lazy.made and made == []


async def test_anything_else_makes_the_session_once_and_carries_info_over() -> None:
    made: list[_Session] = []
    lazy = _lazy(made, object())
    lazy.info["pooled"] = "connection"
    assert await lazy.rollback() == "rolled back"
    assert await lazy.rollback() == "rolled back"
    assert len(made) == 1 and lazy.made
    assert lazy.info is made[0].info
    assert lazy.info == {"own": 1, "pooled": "connection"}
    del lazy.info["pooled"]  # what pooled_connection does at its end, once the session exists
    assert made[0].info == {"own": 1}
