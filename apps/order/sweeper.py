"""The order saga's sweeper: compensates sagas whose step was not answered in time (python -m apps.order.sweeper).

Deadlines are rows, not timers: order_sagas.deadline_at is set when a step is entered and cleared when it
is decided. Each round claims due rows with the order they belong to (FOR UPDATE OF both, SKIP LOCKED, so
a consumer handling that order's answer right now is never waited on, and several sweepers share the
work) and cancels each pending order with reason timeout in the same transaction. A killed sweeper left
nothing behind: its transaction rolled back, and the rows are due for the next one.

GET /health, /ready (its database answered on the last round) and /metrics on --port (8204), with the
saga dashboard's gauges: order_saga_orders{step} (sagas waiting on each step) and
order_saga_compensations{reason} (sagas that ended in a cancellation, by reason).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url
from apps.order.saga import Saga
from outbox.probes import serve_probes

log = logging.getLogger("apps.order.sweeper")

TIMED_OUT = Counter("order_saga_timeouts_total", "Sagas compensated by the sweeper", ["step"])
ROUNDS_FAILED = Counter("order_saga_sweeper_rounds_failed_total", "Sweeper rounds that failed (database errors)")
ORDERS_PER_STEP = Gauge("order_saga_orders", "Sagas waiting on each step (done: finished)", ["step"])
COMPENSATIONS = Gauge("order_saga_compensations", "Sagas that ended in a cancellation, by reason", ["reason"])

_DUE = text(
    "SELECT s.order_id, s.step FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "WHERE s.deadline_at <= now() ORDER BY s.deadline_at LIMIT :limit FOR UPDATE OF o, s SKIP LOCKED"
)
_PER_STEP = text("SELECT step, count(*) FROM order_sagas GROUP BY step")
_PER_REASON = text(
    "SELECT s.reason, count(*) FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "WHERE o.status = 'cancelled' AND s.reason IS NOT NULL GROUP BY s.reason"
)


class Sweeper:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, batch: int = 50, poll_s: float = 0.5) -> None:
        self.sessions = sessions
        self.batch = batch
        self.poll_s = poll_s
        self.stopping = asyncio.Event()
        self.healthy = False

    def stop(self) -> None:
        self.stopping.set()

    async def round(self) -> int:
        """Compensate one batch of due sagas in one transaction; how many (-1: the database failed)."""
        try:
            async with self.sessions() as session, session.begin():
                due = (await session.execute(_DUE, {"limit": self.batch})).tuples().all()
                saga = Saga(session)
                for order_id, step in due:
                    held = await saga.hold(order_id)
                    if held is not None:
                        await saga.time_out(held)
                        TIMED_OUT.labels(step).inc()
        except Exception as exc:
            # Whatever the database throws while it restarts: wait and try again, never die of an outage.
            self.healthy = False
            ROUNDS_FAILED.inc()
            log.warning("sweeping failed: %r", exc)
            return -1
        self.healthy = True
        if due:
            log.info("compensated %d sagas past their deadline", len(due))
        return len(due)

    async def gauge(self, every_s: float = 5.0) -> None:
        """The saga dashboard, from the state table every few seconds."""
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # a metric must never stop the sweeper
                async with self.sessions() as session:
                    steps = dict((await session.execute(_PER_STEP)).tuples().all())
                    reasons = dict((await session.execute(_PER_REASON)).tuples().all())
                for step in ("reservation", "payment", "done"):
                    ORDERS_PER_STEP.labels(step).set(steps.get(step, 0))
                for reason, count in reasons.items():
                    COMPENSATIONS.labels(reason).set(count)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=every_s)

    async def run(self) -> None:
        gauges = asyncio.create_task(self.gauge())
        try:
            while not self.stopping.is_set():
                done = await self.round()
                if done < self.batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=self.poll_s if done >= 0 else 2.0)
        finally:
            self.stopping.set()
            await gauges


async def serve(port: int | None) -> None:
    engine = create_async_engine(
        database_url(BY_NAME["order"]),
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": "order-sweeper"}},
    )
    sweeper = Sweeper(
        async_sessionmaker(engine, expire_on_commit=False),
        poll_s=float(os.environ.get("ORDER_SWEEPER_POLL_S", "0.5")),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sweeper.stop)
    probes = serve_probes(port, lambda: (sweeper.healthy, {"database": sweeper.healthy})) if port else None
    try:
        await sweeper.run()
    finally:
        if probes is not None:
            probes.shutdown()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("ORDER_SWEEPER_PORT", "0")) or None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
