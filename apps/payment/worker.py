"""The payment worker: calls the provider for the ledger's pending operations (python -m apps.payment.worker).

The consumer and the API only write pending operations; this process claims the due ones (FOR UPDATE
SKIP LOCKED with a lease, so several workers share the queue and a dead one's rows come back once its
lease runs out) and carries each out (apps/payment/operations.py). It is woken by a notification for each
pending operation written (payment_0007's trigger) and otherwise sleeps until the next one is due (``DUE``,
at most poller.IDLE_S); a full batch is followed by the next one at once, a partial one by a pause of
PAYMENT_WORKER_POLL_S that a notification ends.

GET /health, /ready (its database answered on the last round) and /metrics on --port (8205).
SIGTERM finishes the operations in flight and exits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.poller import DueCheck, Poller, poller_engine, poller_main, serve_poller
from apps.payment.operations import claim_due, execute, refund_status_after
from apps.payment.provider import PaymentProvider, RetryPolicy, open_provider_session, provider_from_env
from apps.payment.settings import settings

log = logging.getLogger("apps.payment.worker")

OPERATIONS = Counter("payment_worker_operations_total", "Provider operations carried out", ["outcome"])
ROUNDS_FAILED = Counter("payment_worker_rounds_failed_total", "Claim rounds that failed (database errors)")
PENDING = Gauge(
    "payment_operations_pending",
    "Ledger operations awaiting the provider's answer, and the oldest's age",
    ["kind", "measure"],
)
KINDS = ("authorize", "capture", "void", "refund")
_PENDING_BY_KIND = text(
    "SELECT kind, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
    "FROM payment_operations WHERE outcome = 'pending' GROUP BY kind"
)
# Seconds until operations._CLAIM finds a row (its rows without the one-per-payment rule), through the same
# partial index (ix_payment_operations_due): the first pending next_attempt_at.
DUE = "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM payment_operations WHERE outcome = 'pending'"
# Notified by payment_0007's trigger for every pending operation written or made due, in the writer's commit.
CHANNEL = "payment_operations_due"


class Worker(Poller):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider: PaymentProvider,
        *,
        batch: int = 16,
        poll_s: float = 0.2,
        lease_s: float = 30.0,
        refund_status_after: dt.timedelta = dt.timedelta(seconds=900),
        due: DueCheck | None = None,
    ) -> None:
        super().__init__(sessions, batch=batch, poll_s=poll_s, rounds_failed=ROUNDS_FAILED, log=log, due=due)
        self.provider = provider
        self.lease_s = lease_s
        self.refund_status_after = refund_status_after

    async def gauge(self) -> None:
        """How many operations of each kind await an answer, and since when (dashboards)."""
        async with self.sessions() as session:
            found = {kind: (n, age) for kind, n, age in (await session.execute(_PENDING_BY_KIND)).tuples()}
        for kind in KINDS:
            count, age = found.get(kind, (0, 0))
            PENDING.labels(kind, "count").set(count)
            PENDING.labels(kind, "oldest_age_seconds").set(float(age))

    async def work(self) -> int:
        """Claim one batch (committed with its leases), then carry each operation out in its own session."""
        async with self.sessions() as session:
            claimed = await claim_due(session, limit=self.batch, lease_s=self.lease_s)
        await asyncio.gather(*(self._one(op_id) for op_id in claimed))
        return len(claimed)

    async def _one(self, op_id: uuid.UUID) -> None:
        try:
            async with self.sessions() as session:
                outcome = await execute(session, self.provider, op_id, status_after=self.refund_status_after)
        except Exception:
            # The row stays pending under its lease and is claimed again once the lease runs out.
            log.exception("operation %s failed", op_id)
            OPERATIONS.labels("error").inc()
            return
        OPERATIONS.labels(outcome).inc()


async def serve(port: int | None) -> None:
    config = settings()
    lease_s = config.worker_lease_s
    try:
        status_after = refund_status_after()
        RetryPolicy.from_env().check_within(lease_s, "PAYMENT_WORKER_LEASE_S")
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    engine = poller_engine("payment", "payment-worker", pool_size=8, max_overflow=12)
    async with open_provider_session() as http:
        worker = Worker(
            async_sessionmaker(engine, expire_on_commit=False),
            provider_from_env(http),
            poll_s=config.worker_poll_s,
            lease_s=lease_s,
            refund_status_after=status_after,
            due=DueCheck(engine, "payment-worker", DUE, channel=CHANNEL),
        )
        await serve_poller(worker, engine, port)


def main() -> None:
    poller_main(__doc__, settings().worker_port or None, serve)


if __name__ == "__main__":
    main()
