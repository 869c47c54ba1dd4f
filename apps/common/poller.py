"""A process that works a table's due rows in rounds: the payment worker, the order and returns sweepers.

Each round claims a batch of due rows (FOR UPDATE SKIP LOCKED, so several processes share the work) and
handles them; a full batch is followed by the next at once, otherwise the poller waits ``poll_s`` (2 s
after a failed round). A poller given a ``DueCheck`` asks that one statement first: how long until its next
row is due. It runs a round only for a row due now, otherwise waits until the next one is due or ``poll_s``,
whichever is sooner: an idle tick is one round trip on a connection of its own instead of a pooled session's
BEGIN, claim and COMMIT through SQLAlchemy. A check with a ``channel`` LISTENs on it: a notification (the
payment worker's: a trigger on each pending operation written) or the loss of that connection ends the wait
at once, so its idle wait can be long (``IDLE_S``) and a new row is not waited for at all.
A database that fails makes the round fail, never the process: /ready answers 503 until a round succeeds
again. Gauges for the dashboards are refreshed every few seconds beside the rounds. SIGTERM finishes the
round in flight and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from apps.common.db import replace_closed_connections
from apps.common.read_routing import MonitorLink
from apps.common.topology import BY_NAME, database_url
from outbox.probes import run_until_signalled
from outbox.redaction import configure_logging

__all__ = ["DueCheck", "Poller", "Sessions", "poller_engine", "poller_main", "serve_poller"]

Sessions = async_sessionmaker[AsyncSession]  # what a poller opens its rounds' sessions from
FAILED_ROUND_PAUSE_S = 2.0
GAUGE_EVERY_S = 5.0
# A check that takes longer than this is given up on and the round runs (and reports a failing database).
DUE_CHECK_TIMEOUT_S = 5.0
# The longest wait of a poller woken by notifications: a safety net only (its check says when the next row is
# due, a notification or the LISTEN connection's loss ends the wait at once).
IDLE_S = 10.0


class DueCheck:
    """How long until a round would find something: one statement answering the seconds until the next due row
    (<= 0: one is due now; NULL: none). Its condition is the round's claim's own or wider (rows the claim would
    still skip, locked or blocked, make it due: a round, as before). asyncpg itself on a connection of its
    own, autocommit, its statement prepared once. With ``channel``, each new connection LISTENs on it before
    its first check, so nothing written between two checks goes unnoticed; ``woken`` is set by a
    notification and by that connection's loss."""

    def __init__(
        self,
        engine: AsyncEngine,
        application_name: str,
        query: str,
        args: Callable[[], tuple[object, ...]] = tuple,
        *,
        channel: str | None = None,
    ) -> None:
        self.channel = channel
        self.woken = asyncio.Event()
        self.link = MonitorLink(
            engine.url.render_as_string(hide_password=False),
            application_name,
            on_connect=self._listen if channel is not None else None,
        )
        self.query = query
        self.args = args

    async def _listen(self, conn: Any) -> None:
        conn.add_termination_listener(self._wake)
        await conn.add_listener(self.channel, self._wake)

    def _wake(self, *_: object) -> None:
        self.woken.set()

    async def due_in(self) -> float | None:
        # asyncio.timeout, not wait_for: no task of its own for each check (a cut-off statement's connection
        # is dropped by the link).
        async with asyncio.timeout(DUE_CHECK_TIMEOUT_S):
            row = await self.link.fetchrow(self.query, *self.args())
        return None if row[0] is None else float(row[0])

    async def close(self) -> None:
        await self.link.close()


class Poller(ABC):
    """Subclasses say what a round does (``work``) and which gauges they refresh (``gauge``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch: int,
        poll_s: float,
        rounds_failed: Counter,
        log: logging.Logger,
        due: DueCheck | None = None,
    ) -> None:
        self.sessions = sessions
        self.due = due
        self.batch = batch
        self.poll_s = poll_s
        self.rounds_failed = rounds_failed
        self.log = log
        self.stopping = asyncio.Event()
        self.healthy = False

    @abstractmethod
    async def work(self) -> int:
        """Claim and handle one batch; how many rows it had. An exception means the database failed."""

    @abstractmethod
    async def gauge(self) -> None:
        """Refresh the poller's gauges; an exception leaves them as they were."""

    def stop(self) -> None:
        self.stopping.set()
        if self.due is not None:
            self.due.woken.set()

    async def round(self) -> int:
        """One batch; how many rows it had (-1: the database failed)."""
        try:
            done = await self.work()
        except Exception as exc:
            # Whatever the database throws while it restarts (asyncpg raises CannotConnectNowError unwrapped
            # at connect time): wait and try again, never die of an outage.
            self.healthy = False
            self.rounds_failed.inc()
            self.log.warning("round failed: %r", exc)
            return -1
        self.healthy = True
        return done

    async def due_in(self) -> float | None:
        """Seconds until the next row is due (<= 0: now), None: nothing waits. Without a check, or when it
        fails: 0, so the round runs and reports the database as it always did (unhealthy, counted, the 2-s
        pause)."""
        if self.due is None:
            return 0.0
        try:
            due_in = await self.due.due_in()
        except Exception:
            return 0.0
        if due_in is None or due_in > 0:
            self.healthy = True  # the database answered, and no round will say so
        return due_in

    async def run(self) -> None:
        gauges = asyncio.create_task(self._gauge_until_stopped())
        idle_s = IDLE_S if self.due is not None and self.due.channel is not None else self.poll_s
        try:
            while not self.stopping.is_set():
                if self.due is not None:
                    # Cleared before the check: a notification arriving while it checks or works ends the
                    # wait that follows at once.
                    self.due.woken.clear()
                due_in = await self.due_in()
                if due_in is not None and due_in <= 0:
                    done = await self.round()
                    if done >= self.batch:
                        continue
                    wait = self.poll_s if done >= 0 else FAILED_ROUND_PAUSE_S
                else:
                    wait = idle_s if due_in is None else min(due_in, idle_s)
                await self._pause(wait, woken=self.due.woken if self.due is not None else None)
        finally:
            self.stopping.set()
            await gauges
            if self.due is not None:
                await self.due.close()

    async def _gauge_until_stopped(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # a metric must never stop the poller
                await self.gauge()
            await self._pause(GAUGE_EVERY_S)

    async def _pause(self, seconds: float, woken: asyncio.Event | None = None) -> None:
        """Wait ``seconds``, less if stopped or ``woken`` is set. asyncio.timeout, not wait_for: wait_for wraps
        the wait in a task of its own at every pause."""
        if self.stopping.is_set():  # stopped after ``woken`` was cleared for this wait
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await (self.stopping if woken is None else woken).wait()  # stop() sets both


def poller_engine(service: str, application_name: str, *, pool_size: int, max_overflow: int) -> AsyncEngine:
    """The poller's own pool on its service's database; connections a restart closed are replaced at checkout.

    Not by ``pool_pre_ping``: on asyncpg its ping is three round trips (BEGIN, ';', ROLLBACK) on every
    checkout, and an idle round is a checkout, BEGIN, the claim and COMMIT: the ping doubled what an idle
    poller cost (the payment worker polls five times a second). ``replace_closed_connections`` sees the
    closed socket without a round trip, as the services' pools do.
    """
    engine = create_async_engine(
        database_url(BY_NAME[service]),
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"server_settings": {"application_name": application_name}},
    )
    replace_closed_connections(engine)
    return engine


async def serve_poller(poller: Poller, engine: AsyncEngine, port: int | None) -> None:
    """Run ``poller`` until SIGTERM/SIGINT, with /health, /ready (its database answered on the last round)
    and /metrics on ``port``; the engine is disposed whatever happens."""
    await run_until_signalled(
        poller.run,
        poller.stop,
        port=port,
        readiness=lambda: (poller.healthy, {"database": poller.healthy}),
        cleanup=engine.dispose,
    )


def poller_main(
    doc: str | None, default_port: int | None, serve: Callable[[int | None], Coroutine[Any, Any, None]]
) -> None:
    """The command line of a poller process: ``--port`` for its probes, INFO logs on stderr."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    configure_logging()  # plain text, every line through redact (issue 14)
    asyncio.run(serve(args.port))
