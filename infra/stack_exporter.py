"""The stack exporter: what no standard exporter knows about this system (python -m infra.stack_exporter).

GET /metrics, fresh at each scrape:

- ``commerce_connect_up``; ``commerce_connector_running{connector}`` and
  ``commerce_connector_task_running{connector,task}`` (1 RUNNING, 0 anything else, missing included: a
  RUNNING connector that lists no task has task 0 at 0) for every connector of connectors/, and
  ``commerce_connector_state{connector,state}``.
- ``commerce_replication_slot_lag_bytes|_lag_seconds|_retained_wal_bytes|_active{slot}``: WAL a slot's
  consumer has not confirmed, how long ago the oldest unconfirmed WAL was written, WAL the slot keeps;
  for every slot: Debezium's logical ones and the read replica's physical one (its restart position).
- ``commerce_pg_wal_bytes``, ``commerce_pg_data_dir_bytes`` (databases + WAL) and the data dir's file
  system (``commerce_pg_data_fs_size_bytes``, ``commerce_pg_data_fs_avail_bytes``).
- ``commerce_dead_letters{group}`` (messages in ``<group>.dlq``) and ``commerce_dead_letters_pending{group}``
  (not yet redriven: past the ``<group>.redrive`` group's committed offset), counted every 15 s in the
  background and served from that count. Counted by a child process (DeadLetterChild), the only one
  holding librdkafka clients: an assertion in librdkafka aborts the process it runs in (it killed the
  exporter once while the broker restarted; infra/dead_letter_stats.py says why), now only that child,
  made anew at the next count; ``commerce_exporter_child_restarts`` counts those.
- ``commerce_backup_count``, ``commerce_backup_last_full_timestamp_seconds``,
  ``commerce_backup_last_timestamp_seconds`` (when the newest full / any backup ended),
  ``commerce_backup_wal_archive_bytes`` (pgBackRest's WAL archive on disk) and
  ``commerce_backup_wal_to_replay_bytes`` (archived WAL from the newest backup's start: what a recovery to
  now replays), read every minute in the background (`pgbackrest info` and the archive's file sizes,
  infra/backup_physical.py).
- ``commerce_order_saga_overdue``: order sagas still waiting on a step a minute past its deadline (the
  sweeper compensates them within a second or two when it runs).
- ``commerce_exporter_source_up{source}``: 0 when a source failed this scrape; its metrics are then absent.
  The log says when a source starts failing, once per 5 minutes while it goes on, and when it answers again
  (infra/outages.py), not at every scrape; likewise the child's librdkafka lines while the broker is away.

Slot lag in seconds: WAL positions carry no time, so a sampler records (time, current WAL position) every
two seconds; a slot's lag is the age of the first sample past its confirmed position. It is a lower bound
(by at most one sample interval) and only covers the exporter's own lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import asyncpg
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.common.topology import BY_NAME, connect_url, database_url
from infra import backup_physical, connectors, dead_letter_stats, monitoring, postgres
from infra.keep import ended_by
from infra.outages import OutageLog
from outbox.probes import run_until_signalled
from outbox.redaction import configure_logging

log = logging.getLogger("infra.stack_exporter")

SAMPLE_EVERY_S = 2.0
SAMPLES_KEPT = 6 * 3600 // 2  # six hours of WAL positions
SAGA_GRACE = "1 minute"
# Each source gets this long, well inside Prometheus' 4 s scrape timeout (infra/monitoring.py): a slow
# source (Kafka after a broker restart, PostgreSQL restarting) is reported down by
# commerce_exporter_source_up while the others still answer. At 4 s, one slow source failed the whole
# scrape, and every series of the exporter vanished with it.
SOURCE_TIMEOUT_S = 2.5
DEAD_LETTERS_EVERY_S = 15.0
BACKUPS_EVERY_S = 60.0  # backups change hourly at most; the archive grows ~25 MB a minute at the bench's rates
# A count's bound: a few broker round trips of dead_letter_stats.TIMEOUT_S each when the broker is away. A
# child past it is stuck in librdkafka: it is killed and made anew.
DEAD_LETTERS_TIMEOUT_S = 30.0
CHILD = [sys.executable, "-m", "infra.dead_letter_stats", "serve"]


def lag_seconds(samples: Sequence[tuple[float, int]], confirmed: int, current: int, now: float) -> float:
    """Age of the oldest WAL the slot has not confirmed: the first sample (oldest first) past ``confirmed``.

    0 when the slot is caught up, or when all its unconfirmed WAL was written after the last sample.
    """
    if confirmed >= current:
        return 0.0
    positions = [lsn for _, lsn in samples]
    index = bisect.bisect_right(positions, confirmed)
    if index == len(samples):
        return 0.0
    return max(0.0, now - samples[index][0])


class ReusedConnection:
    """One PostgreSQL connection kept across scrapes, one user at a time, replaced after any failure.

    A connection per scrape cost a new backend (fork, catalog caches) and a SCRAM exchange, whose key
    derivation is slow on purpose, on both sides, every 5 s for each of two databases: ~17 ms of the
    exporter's CPU per scrape, more than all its queries. A failure (PostgreSQL restarting, a timeout that
    cancelled a query halfway) drops it, and the next use connects afresh.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # a scrape and the WAL sampler, or two scrapes, take turns

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            try:
                yield self._conn
            except BaseException:
                self._conn.terminate()
                self._conn = None
                raise

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


@dataclass
class Snapshot:
    metrics: list[Metric] = field(default_factory=list)

    def gauge(self, name: str, doc: str, labels: Sequence[str], rows: Iterable[tuple[Sequence[str], float]]) -> None:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        for values, value in rows:
            family.add_metric(list(values), value)
        self.metrics.append(family)


class _Scraping(Collector):
    """Each scrape of /metrics (served from the probe thread) runs the exporter's sources on its loop."""

    def __init__(self, exporter: Exporter, loop: asyncio.AbstractEventLoop) -> None:
        self.exporter, self.loop = exporter, loop

    def describe(self) -> Iterator[Metric]:
        return iter(())  # registering must not scrape: it runs on the loop the scrape needs

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self.exporter.scrape(), self.loop)
        return iter(future.result(timeout=SOURCE_TIMEOUT_S + 1))


class DeadLetterChild:
    """dead_letter_stats.read in a child process (``argv``), kept between counts and made anew when it
    died or did not answer within ``timeout_s``; its stderr (librdkafka's assertion included) is ours."""

    def __init__(self, argv: Sequence[str] = CHILD, timeout_s: float = DEAD_LETTERS_TIMEOUT_S) -> None:
        self.argv, self.timeout_s = list(argv), timeout_s
        self.child: asyncio.subprocess.Process | None = None
        self.restarts = 0  # children that ended without being asked to (an abort), or were killed stuck

    async def read(self) -> list[dead_letter_stats.DeadLetterCount]:
        child = await self._running()
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(b"count\n")
            await child.stdin.drain()
            line = await asyncio.wait_for(child.stdout.readline(), self.timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            await self._lost(
                child, f"no answer within {self.timeout_s:.0f} s" if isinstance(exc, TimeoutError) else repr(exc)
            )
            raise RuntimeError("the dead-letter counter did not answer") from exc
        if not line:  # its stdout closed: it died (SIGABRT is librdkafka's failed assertion)
            await self._lost(child, "it ended")
            raise RuntimeError("the dead-letter counter died")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"dead letters not read: {answer['error']}")
        return [dead_letter_stats.DeadLetterCount(*row) for row in answer["counts"]]

    async def _running(self) -> asyncio.subprocess.Process:
        if self.child is not None and self.child.returncode is not None:
            # Died between counts: librdkafka's threads run (and may assert) while nothing is asked.
            await self._lost(self.child, "it ended between counts")
        if self.child is None:
            self.child = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        return self.child

    async def _lost(self, child: asyncio.subprocess.Process, why: str) -> None:
        if child.returncode is None:
            child.kill()
        code = await child.wait()
        self.child = None
        self.restarts += 1
        ended = ended_by(code)
        log.warning("dead-letter counter (pid %d) lost: %s, %s; a new one counts next", child.pid, why, ended)

    async def close(self) -> None:
        if self.child is not None and self.child.returncode is None:
            assert self.child.stdin is not None
            self.child.stdin.close()  # its end of input ends it
            try:
                await asyncio.wait_for(self.child.wait(), 5)
            except TimeoutError:
                self.child.kill()
                await self.child.wait()
        self.child = None


class Exporter:
    def __init__(self, dead_letters_every_s: float = DEAD_LETTERS_EVERY_S) -> None:
        self.dead_letters_every_s = dead_letters_every_s
        self.dead_letter_child = DeadLetterChild()
        self.samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=SAMPLES_KEPT)
        self.http: aiohttp.ClientSession | None = None
        self.dead_letter_counts: list[dead_letter_stats.DeadLetterCount] | None = None
        self.dead_letters_read_at = 0.0
        self.monitoring_db = ReusedConnection(_connect_monitoring)
        self.order_db = ReusedConnection(
            lambda: asyncpg.connect(database_url(BY_NAME["order"], driver="postgresql"), timeout=3)
        )
        self.outages: dict[str, OutageLog] = {}
        self.backups: backup_physical.RepoState | None = None
        self.backups_read_at = 0.0

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.dead_letter_child.close()
        await self.monitoring_db.close()
        await self.order_db.close()

    async def run_background(self, stopping: asyncio.Event) -> None:
        await asyncio.gather(
            self.sample_wal(stopping), self.refresh_dead_letters(stopping), self.refresh_backups(stopping)
        )

    async def refresh_backups(self, stopping: asyncio.Event) -> None:
        """Read the backup repository every BACKUPS_EVERY_S, off the scrape (a subprocess and a walk of a
        few thousand archive files: ~0.1 s)."""
        while not stopping.is_set():
            try:
                self.backups = await asyncio.to_thread(backup_physical.state)
                self.backups_read_at = time.monotonic()
            except Exception as exc:
                log.debug("backups not read: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), BACKUPS_EVERY_S)

    async def refresh_dead_letters(self, stopping: asyncio.Event) -> None:
        """Count dead letters every ``dead_letters_every_s``, off the scrape: with many dead-letter topics it
        takes several broker round trips each, longer than a scrape may take."""
        while not stopping.is_set():
            try:
                self.dead_letter_counts = await self.dead_letter_child.read()
                self.dead_letters_read_at = time.monotonic()
            except Exception as exc:  # the broker restarting: keep the last counts until they go stale
                log.debug("dead letters not read: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.dead_letters_every_s)

    async def sample_wal(self, stopping: asyncio.Event) -> None:
        """Record the current WAL position every SAMPLE_EVERY_S (the clock of slot lag in seconds)."""
        while not stopping.is_set():
            try:
                async with self.monitoring_db() as conn:
                    lsn = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
                self.samples.append((time.time(), int(lsn)))
            except Exception as exc:  # PostgreSQL restarting: keep sampling once it is back
                log.debug("WAL sample failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), SAMPLE_EVERY_S)

    async def scrape(self) -> list[Metric]:
        snapshot = Snapshot()
        sources: dict[str, Callable[[Snapshot], Awaitable[None]]] = {
            "connect": self.connect_status,
            "postgres": self.postgres_stats,
            "order_db": self.saga_overdue,
            "kafka": self.dead_letters,
            "backups": self.backup_metrics,
        }
        results = await asyncio.gather(
            *(asyncio.wait_for(source(snapshot), SOURCE_TIMEOUT_S) for source in sources.values()),
            return_exceptions=True,
        )
        for name, result in zip(sources, results, strict=True):
            outage = self.outages.setdefault(name, OutageLog(log, f"source {name} failing"))
            if isinstance(result, BaseException):
                outage.failed(repr(result))
            else:
                outage.recovered()
        snapshot.gauge(
            "commerce_exporter_source_up",
            "1 when the source answered this scrape",
            ["source"],
            [((name,), 0.0 if isinstance(r, BaseException) else 1.0) for name, r in zip(sources, results, strict=True)],
        )
        self.child_restarts(snapshot)
        return snapshot.metrics

    async def connect_status(self, snapshot: Snapshot) -> None:
        expected = [connectors.load(path, {})[0] for path in sorted(connectors.CONNECTORS.glob("*.json"))]
        self.http = self.http or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SOURCE_TIMEOUT_S))
        try:
            async with self.http.get(f"{connect_url()}/connectors?expand=status") as resp:
                resp.raise_for_status()
                deployed: dict[str, dict[str, object]] = await resp.json()
        except aiohttp.ClientError:
            snapshot.gauge("commerce_connect_up", "Kafka Connect's REST API answers", [], [((), 0.0)])
            raise
        snapshot.gauge("commerce_connect_up", "Kafka Connect's REST API answers", [], [((), 1.0)])
        states, running, tasks = connector_rows(expected, deployed)
        snapshot.gauge(
            "commerce_connector_state", "1 for the connector's current state", ["connector", "state"], states
        )
        snapshot.gauge("commerce_connector_running", "1 when the connector is RUNNING", ["connector"], running)
        snapshot.gauge("commerce_connector_task_running", "1 when the task is RUNNING", ["connector", "task"], tasks)

    async def postgres_stats(self, snapshot: Snapshot) -> None:
        async with self.monitoring_db() as conn:
            slots = await conn.fetch(
                "SELECT slot_name, active, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS current, "
                "pg_wal_lsn_diff(coalesce(confirmed_flush_lsn, restart_lsn), '0/0')::bigint AS confirmed, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained "
                "FROM pg_replication_slots"
            )
            wal = await conn.fetchval("SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir()")
            databases = await conn.fetchval("SELECT sum(pg_database_size(oid))::bigint FROM pg_database")
        now, samples = time.time(), list(self.samples)
        per_slot: dict[str, tuple[str, Callable[[asyncpg.Record], float]]] = {
            "lag_bytes": ("WAL not confirmed by the slot", lambda r: max(0, r["current"] - r["confirmed"])),
            "lag_seconds": (
                "Age of the oldest WAL the slot has not confirmed",
                lambda r: lag_seconds(samples, r["confirmed"], r["current"], now),
            ),
            "retained_wal_bytes": ("WAL kept for the slot", lambda r: r["retained"] or 0),
            "active": ("1 while a consumer streams from the slot", lambda r: r["active"]),
        }
        for name, (doc, value) in per_slot.items():
            rows = [((row["slot_name"],), float(value(row))) for row in slots]
            snapshot.gauge(f"commerce_replication_slot_{name}", doc, ["slot"], rows)
        fs = os.statvfs(postgres.DATA)
        for name, doc, number in (
            ("commerce_pg_wal_bytes", "Size of pg_wal", wal),
            ("commerce_pg_data_dir_bytes", "Databases plus WAL", databases + wal),
            ("commerce_pg_data_fs_size_bytes", "Size of the data dir's file system", fs.f_blocks * fs.f_frsize),
            ("commerce_pg_data_fs_avail_bytes", "Free space on the data dir's file system", fs.f_bavail * fs.f_frsize),
        ):
            snapshot.gauge(name, doc, [], [((), float(number))])

    async def saga_overdue(self, snapshot: Snapshot) -> None:
        async with self.order_db() as conn:
            overdue = await conn.fetchval(
                "SELECT CASE WHEN to_regclass('order_sagas') IS NULL THEN 0 ELSE "
                f"(SELECT count(*) FROM order_sagas WHERE deadline_at < now() - interval '{SAGA_GRACE}') END"
            )
        snapshot.gauge(
            "commerce_order_saga_overdue", f"Sagas waiting {SAGA_GRACE} past their step's deadline", [], [((), overdue)]
        )

    async def dead_letters(self, snapshot: Snapshot) -> None:
        counts = self.dead_letter_counts
        if counts is None or time.monotonic() - self.dead_letters_read_at > 4 * self.dead_letters_every_s:
            raise RuntimeError("dead letters not read from Kafka lately")
        snapshot.gauge(
            "commerce_dead_letters", "Messages in the group's dead-letter topic", ["group"],
            [((c.group,), float(c.total)) for c in counts],
        )  # fmt: skip
        snapshot.gauge(
            "commerce_dead_letters_pending", "Dead letters not yet redriven", ["group"],
            [((c.group,), float(c.pending)) for c in counts],
        )  # fmt: skip

    async def backup_metrics(self, snapshot: Snapshot) -> None:
        repo = self.backups
        if repo is None or time.monotonic() - self.backups_read_at > 4 * BACKUPS_EVERY_S:
            raise RuntimeError("the backup repository not read lately")
        snapshot.gauge("commerce_backup_count", "Backups in pgBackRest's repository", [], [((), float(repo.backups))])
        for name, doc, at in (
            ("commerce_backup_last_full_timestamp_seconds", "When the newest full backup ended", repo.last_full),
            ("commerce_backup_last_timestamp_seconds", "When the newest backup of any type ended", repo.last_backup),
        ):
            snapshot.gauge(name, doc, [], [] if at is None else [((), at)])
        snapshot.gauge(
            "commerce_backup_wal_archive_bytes",
            "pgBackRest's WAL archive on disk",
            [],
            [((), float(repo.archive_bytes))],
        )
        snapshot.gauge(
            "commerce_backup_wal_to_replay_bytes",
            "Archived WAL from the newest backup's start: what a recovery to now replays",
            [],
            [((), float(repo.to_replay_bytes))],
        )

    def child_restarts(self, snapshot: Snapshot) -> None:
        snapshot.gauge(
            "commerce_exporter_child_restarts",
            "Dead-letter counting children lost (died, e.g. a librdkafka assertion, or stuck) and made anew",
            [],
            [((), float(self.dead_letter_child.restarts))],
        )


def connector_rows(
    expected: Sequence[str], deployed: dict[str, dict[str, object]]
) -> tuple[list[tuple[Sequence[str], float]], list[tuple[Sequence[str], float]], list[tuple[Sequence[str], float]]]:
    """Rows of the three connector gauges from GET /connectors?expand=status; a connector not deployed is
    state MISSING, not running, with no tasks."""
    states: list[tuple[Sequence[str], float]] = []
    running: list[tuple[Sequence[str], float]] = []
    tasks: list[tuple[Sequence[str], float]] = []
    for name in sorted({*expected, *deployed}):
        status = deployed.get(name, {}).get("status")
        status = status if isinstance(status, dict) else {}
        state = str(status.get("connector", {}).get("state", "MISSING"))
        states.append(((name, state), 1.0))
        running.append(((name,), float(state == "RUNNING")))
        listed = status.get("tasks") or []
        for task in listed:
            tasks.append(((name, str(task.get("id"))), float(task.get("state") == "RUNNING")))
        if state == "RUNNING" and not listed:
            # Connect lists a task only once its start() returned; Debezium's start() waits up to 30 minutes
            # for a slot it cannot use (invalidated: 900 tries 2 s apart). Nothing streams meanwhile: task 0
            # (Connect numbers tasks from 0) is reported not running, so ConnectorTaskNotRunning fires.
            tasks.append(((name, "0"), 0.0))
    return states, running, tasks


async def _connect_monitoring() -> asyncpg.Connection:
    return await asyncpg.connect(monitoring.monitoring_dsn(), timeout=3)


async def serve(port: int, dead_letters_every_s: float = DEAD_LETTERS_EVERY_S) -> None:
    exporter = Exporter(dead_letters_every_s)
    stopping = asyncio.Event()
    REGISTRY.register(_Scraping(exporter, asyncio.get_running_loop()))

    await run_until_signalled(
        lambda: exporter.run_background(stopping),
        stopping.set,
        port=port,
        readiness=lambda: (True, {}),
        cleanup=exporter.close,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=monitoring.STACK_EXPORTER_PORT)
    parser.add_argument(
        "--dead-letters-every", type=float, default=DEAD_LETTERS_EVERY_S, help="seconds between dead-letter counts"
    )
    args = parser.parse_args(argv)
    configure_logging()  # plain text, every line through redact (issue 14)
    asyncio.run(serve(args.port, args.dead_letters_every))


if __name__ == "__main__":
    main()
