"""The order saga's sweeper: compensates sagas whose step was not answered in time (python -m apps.order.sweeper).

Deadlines are rows, not timers: order_sagas.deadline_at is set when a step is entered and cleared when it
is decided. Each round claims due rows with the order they belong to (FOR UPDATE OF both, SKIP LOCKED, so
a consumer handling that order's answer right now is never waited on, and several sweepers share the
work) and cancels each pending order with reason timeout in the same transaction. A killed sweeper left
nothing behind: its transaction rolled back, and the rows are due for the next one.

GET /health, /ready (its database answered on the last round) and /metrics on --port (8204), with the
saga dashboard's gauges: order_saga_orders{step} (sagas waiting on each step),
order_saga_compensations{reason} (sagas that ended in a cancellation, by reason) and
order_saga_payment_failures{payment_status} (orders whose capture, void or refund the provider refused).
"""

from __future__ import annotations

import logging
import os

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.poller import Poller, poller_engine, poller_main, serve_poller
from apps.common.table_writes import TableWrites
from apps.order.saga import Saga

log = logging.getLogger("apps.order.sweeper")

TIMED_OUT = Counter("order_saga_timeouts_total", "Sagas compensated by the sweeper", ["step"])
ROUNDS_FAILED = Counter("order_saga_sweeper_rounds_failed_total", "Sweeper rounds that failed (database errors)")
ORDERS_PER_STEP = Gauge("order_saga_orders", "Sagas waiting on each step (done: finished)", ["step"])
COMPENSATIONS = Gauge("order_saga_compensations", "Sagas that ended in a cancellation, by reason", ["reason"])
PAYMENT_FAILURES = Gauge(
    "order_saga_payment_failures",
    "Orders whose last capture, void or refund the provider refused (someone must follow up)",
    ["payment_status"],
)
REASONS = ("out_of_stock", "payment_declined", "timeout", "requested")
FAILED_PAYMENT_STATUSES = ("capture_failed", "void_failed", "refund_failed")

_DUE = text(
    "SELECT s.order_id, s.step FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "WHERE s.deadline_at <= now() ORDER BY s.deadline_at LIMIT :limit FOR UPDATE OF o, s SKIP LOCKED"
)
_PER_STEP = text("SELECT step, count(*) FROM order_sagas GROUP BY step")
# The saga's own reasons; a cancellation asked for by a person carries free text, so it is one label
# (a metric's labels must stay a small, fixed set).
_PER_REASON = text(
    "SELECT CASE WHEN s.reason IN ('out_of_stock', 'payment_declined', 'timeout') THEN s.reason "
    "ELSE 'requested' END AS why, count(*) FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "WHERE o.status = 'cancelled' GROUP BY why"
)

# A scan of orders: run only when orders or order_sagas were written (TableWrites).
_PAYMENT_FAILURES = text(
    "SELECT payment_status, count(*) FROM orders "
    "WHERE payment_status IN ('capture_failed', 'void_failed', 'refund_failed') GROUP BY payment_status"
)


class Sweeper(Poller):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, batch: int = 50, poll_s: float = 0.5) -> None:
        super().__init__(sessions, batch=batch, poll_s=poll_s, rounds_failed=ROUNDS_FAILED, log=log)
        self.writes = TableWrites("orders", "order_sagas")

    async def work(self) -> int:
        """Compensate one batch of due sagas in one transaction; how many."""
        async with self.sessions() as session, session.begin():
            due = (await session.execute(_DUE, {"limit": self.batch})).tuples().all()
            saga = Saga(session)
            for order_id, step in due:
                held = await saga.hold(order_id)
                if held is not None:
                    await saga.time_out(held)
                    TIMED_OUT.labels(step).inc()
        if due:
            log.info("compensated %d sagas past their deadline", len(due))
        return len(due)

    async def gauge(self) -> None:
        """The saga dashboard, from the state table, counted again only once the tables were written."""
        async with self.sessions() as session:
            if not await self.writes.changed(session):
                return
            steps = dict((await session.execute(_PER_STEP)).tuples().all())
            reasons = dict((await session.execute(_PER_REASON)).tuples().all())
            failures = dict((await session.execute(_PAYMENT_FAILURES)).tuples().all())
        # Every label is always there (0 included), so a dashboard's panels never show "no data".
        for step in ("reservation", "payment", "done"):
            ORDERS_PER_STEP.labels(step).set(steps.get(step, 0))
        for reason in REASONS:
            COMPENSATIONS.labels(reason).set(reasons.get(reason, 0))
        for status in FAILED_PAYMENT_STATUSES:
            PAYMENT_FAILURES.labels(status).set(failures.get(status, 0))


async def serve(port: int | None) -> None:
    engine = poller_engine("order", "order-sweeper", pool_size=2, max_overflow=2)
    sweeper = Sweeper(
        async_sessionmaker(engine, expire_on_commit=False),
        poll_s=float(os.environ.get("ORDER_SWEEPER_POLL_S", "0.5")),
    )
    await serve_poller(sweeper, engine, port)


def main() -> None:
    poller_main(__doc__, int(os.environ.get("ORDER_SWEEPER_PORT", "0")) or None, serve)


if __name__ == "__main__":
    main()
