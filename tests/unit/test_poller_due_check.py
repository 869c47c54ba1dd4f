"""A poller with a due check (apps.common.poller.DueCheck, session 33, K) runs a round only when its one
statement says something is due: an idle payment worker, order or returns sweeper no longer opens a pooled
session for BEGIN, claim and COMMIT on every tick. It ticks as often as before; a check that fails or hangs
leaves it to the round, which reports the database as before (unhealthy, counted)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import pytest
from prometheus_client import Counter
from sqlalchemy.engine import make_url

from apps.common import poller
from apps.common.poller import DueCheck, Poller

pytestmark = pytest.mark.unit


class Answers(DueCheck):
    """A due check answering from a list (an exception is raised), then False."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.asked = 0
        self.closed = False

    async def anything(self) -> bool:
        self.asked += 1
        answer = self.answers.pop(0) if self.answers else False
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


class Counting(Poller):
    def __init__(self, due: DueCheck | None, *, fail: bool = False, poll_s: float = 0.05) -> None:
        self.failed = Counter("test_poller_rounds_failed", "rounds failed", registry=None)
        super().__init__(None, batch=10, poll_s=poll_s, rounds_failed=self.failed, log=logging.getLogger(), due=due)  # type: ignore[arg-type]
        self.rounds = 0
        self.fail = fail

    async def work(self) -> int:
        self.rounds += 1
        if self.fail:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
        return 1

    async def gauge(self) -> None:
        return None


async def run_for(p: Poller, seconds: float) -> None:
    task = asyncio.create_task(p.run())
    await asyncio.sleep(seconds)
    p.stop()
    await asyncio.wait_for(task, 2)


async def test_nothing_due_skips_every_round_and_still_ticks_and_is_ready() -> None:
    due = Answers()
    p = Counting(due)
    await run_for(p, 0.3)
    assert p.rounds == 0
    assert 3 <= due.asked <= 8, due.asked  # one check per 50-ms tick, as the rounds were
    assert p.healthy  # the database answered
    assert due.closed


async def test_a_round_runs_when_something_is_due() -> None:
    due = Answers(False, True, False)
    p = Counting(due)
    await run_for(p, 0.3)
    assert p.rounds == 1


async def test_a_failing_check_leaves_it_to_the_round_which_reports_the_database() -> None:
    due = Answers(OSError("connection refused"))
    p = Counting(due, fail=True)
    p.healthy = True
    assert await p.anything_due() is True
    assert await p.round() == -1
    assert p.healthy is False
    assert p.failed._value.get() == 1


async def test_without_a_check_every_tick_is_a_round() -> None:
    p = Counting(None)
    await run_for(p, 0.3)
    assert 3 <= p.rounds <= 8, p.rounds


async def test_a_hanging_check_is_cut_off_and_its_connection_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller, "DUE_CHECK_TIMEOUT_S", 0.05)

    class Hanging:
        dropped = False

        def is_closed(self) -> bool:
            return False

        async def fetchrow(self, query: str, *args: object) -> Any:
            await asyncio.sleep(10)

        def terminate(self) -> None:
            Hanging.dropped = True

    engine: Any = type("Engine", (), {"url": make_url("postgresql+asyncpg://u:p@127.0.0.1:1/db")})()
    check = DueCheck(engine, "test", "SELECT EXISTS (SELECT 1)")
    check.link._conn = Hanging()
    p = Counting(check)
    started = asyncio.get_running_loop().time()
    assert await p.anything_due() is True  # the round decides
    assert asyncio.get_running_loop().time() - started < 1
    assert Hanging.dropped and check.link._conn is None
