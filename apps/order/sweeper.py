"""The order saga's sweeper: compensates sagas whose step was not answered in time (python -m apps.order.sweeper).

Deadlines are rows, not timers: order_sagas.deadline_at is set when a step is entered and cleared when it
is decided. Each round claims due rows with the order they belong to (FOR UPDATE OF both, SKIP LOCKED, so
a consumer handling that order's answer right now is never waited on, and several sweepers share the
work) and cancels each pending order with reason timeout in the same transaction. A killed sweeper left
nothing behind: its transaction rolled back, and the rows are due for the next one.

GET /health, /ready (its database answered on the last round) and /metrics on --port (8204), with the
saga dashboard's gauges: order_saga_orders{step} (sagas waiting on each step),
order_saga_compensations{reason} (sagas that ended in a cancellation, by reason) and
order_saga_payment_failures{payment_status} (orders whose capture, void or refund the provider refused),
and order_saga_writer_clock_offset_seconds{writer} (how far the clock of the process that placed the waiting
orders is from the database's: the orders' times are written from it; alert WriterClockSkewed).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.poller import DueCheck, Poller, Sessions, poller_engine, poller_main, serve_poller
from apps.common.table_writes import TableWrites
from apps.order.saga import Saga
from apps.order.settings import settings
from outbox.correlation import resumed

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
WRITER_CLOCK_OFFSET = Gauge(
    "order_saga_writer_clock_offset_seconds",
    "Median of (the placing process's clock - the database's) over the sagas waiting on their reservation",
    ["writer"],
)
REASONS = ("out_of_stock", "payment_declined", "timeout", "requested")
FAILED_PAYMENT_STATUSES = ("capture_failed", "void_failed", "refund_failed")

# With the id its order was placed under (its order.created's, outbox/correlation.py; the unique
# (aggregate_id, event_version) index, one lookup per due saga): the cancellation and what it asks for
# carry it, as the answers that did come would have. No column on the saga: that event keeps it already.
_DUE = text(
    "SELECT s.order_id, s.step, e.correlation_id FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "LEFT JOIN event_store e ON e.aggregate_id = s.order_id AND e.event_version = 1 "
    "WHERE s.deadline_at <= now() ORDER BY s.deadline_at LIMIT :limit FOR UPDATE OF o, s SKIP LOCKED"
)
# Seconds until _DUE finds a row (the first deadline, unlocked; idx_order_sagas_deadline).
DUE = "SELECT extract(epoch FROM min(deadline_at) - now()) FROM order_sagas"
# Each count reads only what it counts, through a partial index (migrations order_0012-0013): the sagas still
# waiting on a step, the cancelled orders, the refused payments. A whole-table count of the finished sagas
# is the one scan left (~30-60 ms of a backend at ~370k sagas), so it runs at most every DONE_EVERY_S.
_WAITING = text("SELECT step, count(*) FROM order_sagas WHERE step <> 'done' GROUP BY step")
_DONE = text("SELECT count(*) FROM order_sagas WHERE step = 'done'")
# The saga's own reasons; a cancellation asked for by a person carries free text, so it is one label
# (a metric's labels must stay a small, fixed set). Every cancellation sets cancelled_at
# (apps/order/transitions.py), so the cancelled orders are found through the partial index on it, and
# their status read from the row: no index on orders covers status, so the confirmation is a HOT update
# (order_0013). The status is still checked: only cancel() sets cancelled_at, but a row with it and another
# status (a development stack held some) must not count as cancelled.
_PER_REASON = text(
    "SELECT CASE WHEN s.reason IN ('out_of_stock', 'payment_declined', 'timeout') THEN s.reason "
    "ELSE 'requested' END AS why, count(*) FROM order_sagas s JOIN orders o ON o.id = s.order_id "
    "WHERE o.cancelled_at IS NOT NULL AND o.status = 'cancelled' GROUP BY why"
)
_PAYMENT_FAILURES = text(
    "SELECT payment_status, count(*) FROM orders "
    "WHERE payment_status IN ('capture_failed', 'void_failed', 'refund_failed') GROUP BY payment_status"
)
# An order's times are written from the placing process's clock (the order API's placement, apps/order/
# transitions.py; the order-saga consumer's for a checkout): created_at, the order number's day, the day
# analytics counts it on. Its saga's deadlines no longer are (session 32: the database's clock, compared with
# the database's now() here), so a skewed host misdates its orders and moves no deadline. Measured on the sagas
# waiting on a reservation (the partial index idx_order_sagas_waiting; at most 200): each row's created_at
# is that process's clock, and its order.created (written in the same transaction) the database's now().
# Off by the time from the process's clock read to its transaction's start too (milliseconds; a pool
# wait), hence the median. No waiting saga, no sample: the writer's gauge reads NaN (no comparison with NaN
# holds, so WriterClockSkewed stays quiet), and the series stays, so the alert's metric always exists.
_WRITER_OFFSETS = text(
    "SELECT CASE WHEN s.checkout_id IS NULL THEN 'order-api' ELSE 'order-saga' END AS writer, "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.created_at - e.created_at)) AS offset_s "
    "FROM (SELECT order_id, checkout_id, created_at FROM order_sagas "
    "      WHERE step <> 'done' AND step = 'reservation' LIMIT 200) AS s "
    "JOIN event_store e ON e.aggregate_id = s.order_id AND e.event_version = 1 GROUP BY 1"
)
WRITERS = ("order-api", "order-saga")


async def writer_clock_offsets(session: AsyncSession) -> dict[str, float]:
    """Per placing process (order-api, order-saga), the median offset of its clock from the database's."""
    return {writer: float(offset) for writer, offset in (await session.execute(_WRITER_OFFSETS)).tuples().all()}


# The finished sagas' gauge may lag by this much while orders are written (the waiting ones: 10 s).
DONE_EVERY_S = 60.0


@dataclass(frozen=True)
class Dashboard:
    """The saga dashboard's counts; ``steps`` has no "done" when the finished sagas were not counted."""

    steps: dict[str, int]
    reasons: dict[str, int]
    failures: dict[str, int]


async def count_dashboard(session: AsyncSession, *, with_done: bool) -> Dashboard:
    steps = dict((await session.execute(_WAITING)).tuples().all())
    if with_done:
        steps["done"] = int(await session.scalar(_DONE) or 0)
    reasons = dict((await session.execute(_PER_REASON)).tuples().all())
    failures = dict((await session.execute(_PAYMENT_FAILURES)).tuples().all())
    return Dashboard(steps, reasons, failures)


BATCH = 50  # due rows per round (one transaction)


class Sweeper(Poller):
    def __init__(self, sessions: Sessions, *, poll_s: float = 0.5, due: DueCheck | None = None) -> None:
        super().__init__(sessions, batch=BATCH, poll_s=poll_s, rounds_failed=ROUNDS_FAILED, log=log, due=due)
        self.writes = TableWrites("orders", "order_sagas")
        self._done_at: float | None = None

    async def work(self) -> int:
        """Compensate one batch of due sagas in one transaction; how many."""
        async with self.sessions() as session, session.begin():
            due = (await session.execute(_DUE, {"limit": self.batch})).tuples().all()
            saga = Saga(session)
            for order_id, step, correlation in due:
                with resumed(correlation):
                    held = await saga.hold(order_id)
                    if held is not None:
                        await saga.time_out(held)
                        TIMED_OUT.labels(step).inc()
                        log.info("order %s: timed out waiting on %s", order_id, step)
        if due:
            log.info("compensated %d sagas past their deadline", len(due))
        return len(due)

    async def gauge(self) -> None:
        """The saga dashboard, from the state table, counted again only once the tables were written."""
        async with self.sessions() as session:
            if not await self.writes.changed(session):
                return
            now = time.monotonic()
            with_done = self._done_at is None or now - self._done_at >= DONE_EVERY_S
            counts = await count_dashboard(session, with_done=with_done)
            offsets = await writer_clock_offsets(session)
        if with_done:
            self._done_at = now
        # Every label is always there (0 included), so a dashboard's panels never show "no data".
        for step in ("reservation", "payment"):
            ORDERS_PER_STEP.labels(step).set(counts.steps.get(step, 0))
        if "done" in counts.steps:  # the first round always counts them, so the label is always there
            ORDERS_PER_STEP.labels("done").set(counts.steps["done"])
        for reason in REASONS:
            COMPENSATIONS.labels(reason).set(counts.reasons.get(reason, 0))
        for status in FAILED_PAYMENT_STATUSES:
            PAYMENT_FAILURES.labels(status).set(counts.failures.get(status, 0))
        for writer in WRITERS:
            WRITER_CLOCK_OFFSET.labels(writer).set(offsets.get(writer, math.nan))


async def serve(port: int | None) -> None:
    engine = poller_engine("order", "order-sweeper", pool_size=2, max_overflow=2)
    sweeper = Sweeper(
        async_sessionmaker(engine, expire_on_commit=False),
        poll_s=settings().sweeper_poll_s,
        due=DueCheck(engine, "order-sweeper", DUE),
    )
    await serve_poller(sweeper, engine, port)


def main() -> None:
    poller_main(__doc__, settings().sweeper_port or None, serve)


if __name__ == "__main__":
    main()
