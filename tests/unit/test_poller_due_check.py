"""A poller with a due check (apps.common.poller.DueCheck, session 33, K) asks one statement how long until its
next row is due and runs a round only for a row due now: an idle payment worker, order or returns sweeper no
longer opens a pooled session for BEGIN, claim and COMMIT on every tick. It waits until the next row is due or
one tick, whichever is sooner; with a LISTEN channel (the payment worker) up to IDLE_S, and a notification or a
stop ends the wait at once. A check that fails or hangs leaves it to the round, which reports the database as
before (unhealthy, counted)."""

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

Answer = float | None | Exception


class Answers(DueCheck):
    """A due check answering from a list (an exception is raised), then ``then``."""

    def __init__(self, *answers: Answer, then: Answer = None, channel: str | None = None) -> None:
        self.answers = list(answers)
        self.then = then
        self.channel = channel
        self.woken = asyncio.Event()
        self.asked = 0
        self.closed = False

    async def due_in(self) -> float | None:
        self.asked += 1
        answer = self.answers.pop(0) if self.answers else self.then
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


class Counting(Poller):
    def __init__(self, due: DueCheck | None, *, fail: bool = False, poll_s: float = 0.05) -> None:
        self.failed = Counter("test_poller_rounds_failed", "rounds failed", registry=None)
        log = logging.getLogger("test")
        super().__init__(None, batch=10, poll_s=poll_s, rounds_failed=self.failed, log=log, due=due)  # type: ignore[arg-type]
        self.rounds: list[float] = []
        self.fail = fail

    async def work(self) -> int:
        self.rounds.append(asyncio.get_running_loop().time())
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
    assert p.rounds == []
    assert 3 <= due.asked <= 8, due.asked  # one check per 50-ms tick, as the rounds were
    assert p.healthy  # the database answered
    assert due.closed


async def test_a_round_runs_when_a_row_is_due_now() -> None:
    due = Answers(None, 0.0, None, -3.0)
    p = Counting(due)
    await run_for(p, 0.35)
    assert len(p.rounds) == 2


async def test_a_row_due_before_the_next_tick_is_waited_for_not_the_tick() -> None:
    due = Answers(0.1, then=0.0)
    p = Counting(due, poll_s=5.0)
    started = asyncio.get_running_loop().time()
    await run_for(p, 0.4)
    assert p.rounds and 0.08 <= p.rounds[0] - started < 0.3, p.rounds


async def test_a_failing_check_leaves_it_to_the_round_which_reports_the_database() -> None:
    due = Answers(OSError("connection refused"))
    p = Counting(due, fail=True)
    p.healthy = True
    assert await p.due_in() == 0.0
    assert await p.round() == -1
    assert p.healthy is False
    assert p.failed._value.get() == 1


async def test_without_a_check_every_tick_is_a_round() -> None:
    p = Counting(None)
    await run_for(p, 0.3)
    assert 3 <= len(p.rounds) <= 8, p.rounds


async def test_a_listening_poller_sleeps_until_notified_then_works_at_once() -> None:
    due = Answers(None, then=None, channel="c")
    p = Counting(due, poll_s=0.05)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.3)
    assert due.asked == 1 and p.rounds == []  # no tick: the wait is poller.IDLE_S
    due.then = 0.0
    notified = asyncio.get_running_loop().time()
    due.woken.set()  # what a notification (or the LISTEN connection's loss) does
    await asyncio.sleep(0.1)
    assert p.rounds and p.rounds[0] - notified < 0.05
    stopped = asyncio.get_running_loop().time()
    due.then = None
    await asyncio.sleep(0.1)
    p.stop()
    await asyncio.wait_for(task, 2)
    assert asyncio.get_running_loop().time() - stopped < 0.5  # a stop ends the long wait at once


async def test_a_notification_during_a_round_ends_the_pause_after_it() -> None:
    class Notified(Counting):
        async def work(self) -> int:
            await super().work()
            if len(self.rounds) == 1:
                due.woken.set()  # written while the worker was busy
            return 1

    due = Answers(0.0, 0.0, then=None, channel="c")
    p = Notified(due, poll_s=5.0)
    await run_for(p, 0.3)
    assert len(p.rounds) == 2 and p.rounds[1] - p.rounds[0] < 0.1


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
    check = DueCheck(engine, "test", "SELECT 0")
    check.link._conn = Hanging()
    p = Counting(check)
    started = asyncio.get_running_loop().time()
    assert await p.due_in() == 0.0  # the round decides
    assert asyncio.get_running_loop().time() - started < 1
    assert Hanging.dropped and check.link._conn is None
