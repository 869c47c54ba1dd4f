"""The payment worker: calls the provider for the ledger's pending operations (python -m apps.payment.worker).

The consumer and the API only write pending operations; this process claims the due ones (FOR UPDATE
SKIP LOCKED with a lease, so several workers share the queue and a dead one's rows come back once its
lease runs out) and carries each out (apps/payment/operations.py). It polls: an idle queue costs one
indexed query per PAYMENT_WORKER_POLL_S, a full batch is followed by the next one at once.

GET /health, /ready (its database answered on the last round) and /metrics on --port (8205).
SIGTERM finishes the operations in flight and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import uuid

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url
from apps.payment.operations import claim_due, execute
from apps.payment.provider import PaymentProvider, open_provider_session, provider_from_env
from outbox.probes import serve_probes

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


class Worker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider: PaymentProvider,
        *,
        batch: int = 16,
        poll_s: float = 0.2,
        lease_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.batch = batch
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.stopping = asyncio.Event()
        self.healthy = False

    def stop(self) -> None:
        self.stopping.set()

    async def gauge_pending(self, every_s: float = 5.0) -> None:
        """Every few seconds: how many operations of each kind await an answer, and since when (dashboards)."""
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # a metric must never stop the worker
                async with self.sessions() as session:
                    found = {kind: (n, age) for kind, n, age in (await session.execute(_PENDING_BY_KIND)).tuples()}
                for kind in KINDS:
                    count, age = found.get(kind, (0, 0))
                    PENDING.labels(kind, "count").set(count)
                    PENDING.labels(kind, "oldest_age_seconds").set(float(age))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=every_s)

    async def run(self) -> None:
        gauges = asyncio.create_task(self.gauge_pending())
        try:
            await self._loop()
        finally:
            self.stopping.set()
            await gauges

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            done = await self.round()
            if done < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.poll_s if done >= 0 else 2.0)

    async def round(self) -> int:
        """Claim and carry out one batch; how many operations it had (-1: the database failed)."""
        try:
            async with self.sessions() as session:
                claimed = await claim_due(session, limit=self.batch, lease_s=self.lease_s)
        except Exception as exc:
            # Whatever the database throws while it restarts (asyncpg raises CannotConnectNowError unwrapped
            # at connect time): the worker waits and tries again, it never dies of an outage.
            self.healthy = False
            ROUNDS_FAILED.inc()
            log.warning("claiming failed: %r", exc)
            return -1
        self.healthy = True
        await asyncio.gather(*(self._one(op_id) for op_id in claimed))
        return len(claimed)

    async def _one(self, op_id: uuid.UUID) -> None:
        try:
            async with self.sessions() as session:
                outcome = await execute(session, self.provider, op_id)
        except Exception:
            # The row stays pending under its lease and is claimed again once the lease runs out.
            log.exception("operation %s failed", op_id)
            OPERATIONS.labels("error").inc()
            return
        OPERATIONS.labels(outcome).inc()


async def serve(port: int | None) -> None:
    engine = create_async_engine(
        database_url(BY_NAME["payment"]),
        pool_size=8,
        max_overflow=12,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": "payment-worker"}},
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with open_provider_session() as http:
        worker = Worker(
            sessions,
            provider_from_env(http),
            poll_s=float(os.environ.get("PAYMENT_WORKER_POLL_S", "0.2")),
            lease_s=float(os.environ.get("PAYMENT_WORKER_LEASE_S", "30")),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        probes = serve_probes(port, lambda: (worker.healthy, {"database": worker.healthy})) if port else None
        try:
            await worker.run()
        finally:
            if probes is not None:
                probes.shutdown()
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PAYMENT_WORKER_PORT", "0")) or None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
