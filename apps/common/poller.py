"""A process that works a table's due rows in rounds: the payment worker, the order saga's sweeper.

Each round claims a batch of due rows (FOR UPDATE SKIP LOCKED, so several processes share the work) and
handles them; a full batch is followed by the next at once, otherwise the poller waits ``poll_s`` (2 s
after a failed round). A database that fails makes the round fail, never the process: /ready answers 503
until a round succeeds again. Gauges for the dashboards are refreshed every few seconds beside the rounds.
SIGTERM finishes the round in flight and exits.
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
from apps.common.topology import BY_NAME, database_url
from outbox.probes import run_until_signalled
from outbox.redaction import configure_logging

__all__ = ["Poller", "poller_engine", "poller_main", "serve_poller"]

FAILED_ROUND_PAUSE_S = 2.0
GAUGE_EVERY_S = 5.0


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
    ) -> None:
        self.sessions = sessions
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

    async def run(self) -> None:
        gauges = asyncio.create_task(self._gauge_until_stopped())
        try:
            while not self.stopping.is_set():
                done = await self.round()
                if done < self.batch:
                    await self._pause(self.poll_s if done >= 0 else FAILED_ROUND_PAUSE_S)
        finally:
            self.stopping.set()
            await gauges

    async def _gauge_until_stopped(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # a metric must never stop the poller
                await self.gauge()
            await self._pause(GAUGE_EVERY_S)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)


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
