"""The stack's scheduled retention and archival jobs, in one process (`just up` starts it as ``jobs``).

    python -m infra.jobs serve [--port 9189]     # run every job on its schedule; /health, /metrics
    python -m infra.jobs run [JOB ...]           # run jobs once now and print what they did

Jobs (each hourly by default, JOBS_EVERY_S; the first run a minute after start, JOBS_FIRST_RUN_S):

- ``outbox-retention``: outbox rows older than a year and inbox rows past the replay window, in every
  service database (outbox/retention.py);
- ``checkout-lifecycle``: idle carts abandoned, old abandoned carts and expired sessions deleted
  (apps/checkout/lifecycle.py);
- ``order-archive``: orders older than two years, with their items, history and saga state, moved to the
  ``*_archive`` tables in batches of 500 (infra/archive.py); their idempotency keys are deleted;
- ``idempotency-keys``: order idempotency keys older than a day deleted in batches;
- ``access-log-retention``: ``data_access_log`` rows older than ``ACCESS_LOG_RETENTION_DAYS`` (730) deleted in
  batches, in every database that has the table (apps/common/access_log.py);
- ``backups``: the seed's backup schedule (infra/pgbackrest/commerce-backup.cron: a full backup daily, an
  incremental every 4 hours) kept by age rather than by the clock: a full backup when the newest full one
  ended 24 hours ago or more (or there is none), else an incremental when the newest backup of any kind
  ended 4 hours ago or more (infra/backup_physical.py). The stack had no schedule unless that cron file was
  installed by hand, and BackupNotRecent fired a day after the last `just backup`.

Every job is safe to run twice at once (here and by hand, or two of these processes): deletes work in
bounded batches, and the archive claims its rows with FOR UPDATE SKIP LOCKED, so two runs share the work
and never move a row twice; of two backups at once pgBackRest's lock refuses the second. When the refused
one is this job's (an operator's `just backup --full` or `--expire` holds the lock), the round is skipped, not
failed: logged, counted with outcome ``skipped``, and the next hourly run takes what is still due.

Metrics, labelled ``task`` (Prometheus keeps ``job`` for the scrape job): ``commerce_job_runs_total``
(by outcome: ok, failed, skipped), ``commerce_job_rows_total`` (by table),
``commerce_job_last_success_timestamp_seconds`` (not moved by a skipped round), ``commerce_job_last_duration_seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apps.checkout import lifecycle as checkout_lifecycle
from apps.checkout.settings import settings as checkout_settings
from apps.common import access_log
from apps.common.topology import BY_NAME, SERVICES, database_url
from infra import archive, backup_physical, proc
from outbox import retention
from outbox.probes import run_until_signalled
from outbox.redaction import configure_logging

log = logging.getLogger("infra.jobs")

ORDER_ARCHIVE_AFTER = dt.timedelta(days=730)
IDEMPOTENCY_KEYS_KEPT = dt.timedelta(days=1)
BATCH = 500

RUNS = Counter("commerce_job_runs_total", "Scheduled job runs by outcome (ok, failed, skipped)", ["task", "outcome"])
ROWS = Counter("commerce_job_rows_total", "Rows a job moved or deleted, by table", ["task", "table"])
LAST_SUCCESS = Gauge("commerce_job_last_success_timestamp_seconds", "When the job last succeeded", ["task"])
LAST_DURATION = Gauge("commerce_job_last_duration_seconds", "How long the job's last run took", ["task"])

# A key is its customer's own (order_0017-0018): the outer condition keeps another customer's fresh row of
# the same key (deleting by key alone took it too, and that customer's retry placed a second order).
_PRUNE_IDEMPOTENCY_KEYS = text(
    "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys WHERE created_at < :cutoff "
    "LIMIT :batch FOR UPDATE SKIP LOCKED) AND created_at < :cutoff"
)

Job = Callable[[dt.datetime], Awaitable[dict[str, int]]]


class Skipped(Exception):
    """This round may not run now, and that is no failure (another process does the same work): logged and
    counted with outcome ``skipped``; the job's last success stays where it was."""


async def _with_engine(service: str, work: Callable[[AsyncEngine], Awaitable[dict[str, int]]]) -> dict[str, int]:
    engine = create_async_engine(database_url(BY_NAME[service]), pool_size=1, max_overflow=0)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


async def outbox_retention(now: dt.datetime) -> dict[str, int]:
    totals: dict[str, int] = {}
    for spec in SERVICES:
        counts = await _with_engine(spec.name, retention.purge)
        for table, count in counts.items():
            totals[f"{spec.name}.{table}"] = count
    return totals


async def checkout_cleanup(now: dt.datetime) -> dict[str, int]:
    return await _with_engine("checkout", lambda engine: checkout_lifecycle.run(engine, now, checkout_settings()))


async def order_archive(now: dt.datetime) -> dict[str, int]:
    return await _with_engine(
        "order",
        lambda engine: archive.archive(
            engine, "orders", cutoff=now - ORDER_ARCHIVE_AFTER, batch=BATCH, drop_children={"idempotency_keys"}
        ),
    )


async def idempotency_keys(now: dt.datetime) -> dict[str, int]:
    async def prune(engine: AsyncEngine) -> dict[str, int]:
        deleted = await retention.in_batches(engine, _PRUNE_IDEMPOTENCY_KEYS, now - IDEMPOTENCY_KEYS_KEPT, BATCH)
        return {"idempotency_keys": deleted}

    return await _with_engine("order", prune)


async def access_log_retention(now: dt.datetime) -> dict[str, int]:
    cutoff = now - dt.timedelta(days=access_log.retention_days())
    totals: dict[str, int] = {}
    for service in access_log.ACCESS_LOG_SERVICES:

        async def purge(engine: AsyncEngine) -> dict[str, int]:
            return {"rows": await retention.in_batches(engine, access_log.PURGE_SQL, cutoff, BATCH)}

        totals[f"{service}.{access_log.ACCESS_LOG_TABLE}"] = (await _with_engine(service, purge))["rows"]
    return totals


FULL_BACKUP_EVERY = dt.timedelta(hours=24)
INCR_BACKUP_EVERY = dt.timedelta(hours=4)
# The jobs run hourly from the process's start, so a backup that ended a few minutes after the hour would
# otherwise wait for the next run: 25 h between full backups, 5 h between incrementals.
BACKUP_SLACK = dt.timedelta(minutes=15)


def backup_due(entries: list[dict[str, Any]], now: dt.datetime) -> str | None:
    """The kind of backup the schedule wants now (`full` or `incr`), from pgBackRest's list (oldest first);
    None when the newest ones are recent enough."""

    def age(entry: dict[str, Any]) -> dt.timedelta:
        return now - dt.datetime.fromtimestamp(entry["timestamp"]["stop"], dt.UTC)

    fulls = [entry for entry in entries if entry.get("type") == "full"]
    if not fulls or age(fulls[-1]) >= FULL_BACKUP_EVERY - BACKUP_SLACK:
        return "full"
    if age(entries[-1]) >= INCR_BACKUP_EVERY - BACKUP_SLACK:
        return "incr"
    return None


async def backups(now: dt.datetime) -> dict[str, int]:
    if proc.running(backup_physical.FIRST_BACKUP):
        return {}  # `just up`'s first full backup is still running
    kind = backup_due(await asyncio.to_thread(backup_physical.backups), now)
    if kind is None:
        return {}
    try:
        await asyncio.to_thread(backup_physical.backup, kind)
    except backup_physical.LockHeld as exc:
        # An operator's `just backup --full|--incr|--expire` (or the cron file's backup) holds the stanza's lock.
        raise Skipped(f"{kind} backup due, and another pgBackRest process holds the lock: {exc}") from exc
    return {kind: 1}


JOBS: dict[str, Job] = {
    "outbox-retention": outbox_retention,
    "checkout-lifecycle": checkout_cleanup,
    "order-archive": order_archive,
    "idempotency-keys": idempotency_keys,
    "access-log-retention": access_log_retention,
    "backups": backups,
}


async def run_job(name: str) -> dict[str, int] | None:
    """One run, recorded in the metrics; None when it failed (logged, never raised)."""
    started = time.monotonic()
    try:
        counts = await JOBS[name](dt.datetime.now(dt.UTC))
    except Skipped as exc:
        RUNS.labels(name, "skipped").inc()
        log.info("job %s skipped: %s", name, exc)
        return {}
    except Exception as exc:
        RUNS.labels(name, "failed").inc()
        log.warning("job %s failed: %r", name, exc)
        return None
    finally:
        LAST_DURATION.labels(name).set(time.monotonic() - started)
    RUNS.labels(name, "ok").inc()
    LAST_SUCCESS.labels(name).set(time.time())
    for table, count in counts.items():
        ROWS.labels(name, table).inc(count)
    log.info("job %s: %s", name, ", ".join(f"{table} {count}" for table, count in counts.items()) or "nothing")
    return counts


async def schedule(stopping: asyncio.Event, every_s: float, first_s: float) -> None:
    for name in JOBS:  # the series exist before the first run, so an alert on them sees a zero
        RUNS.labels(name, "failed")
    delay = first_s
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        if stopping.is_set():
            return
        for name in JOBS:
            await run_job(name)
        delay = every_s


async def serve(port: int) -> None:
    stopping = asyncio.Event()
    every_s = float(os.environ.get("JOBS_EVERY_S", "3600"))
    first_s = float(os.environ.get("JOBS_FIRST_RUN_S", "60"))
    await run_until_signalled(
        lambda: schedule(stopping, every_s, first_s), stopping.set, port=port, readiness=lambda: (True, {})
    )


async def run_once(names: list[str]) -> int:
    failed = 0
    for name in names or list(JOBS):
        counts = await run_job(name)
        failed += counts is None
        print(f"{name}: " + ("FAILED (see the log)" if counts is None else str(counts)), flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="run every job on its schedule")
    serve_parser.add_argument("--port", type=int, default=int(os.environ.get("JOBS_PORT", "9189")))
    run_parser = sub.add_parser("run", help="run jobs once now")
    run_parser.add_argument("jobs", nargs="*", metavar="JOB", help=f"default: every job ({', '.join(JOBS)})")
    args = parser.parse_args(argv)
    unknown = [name for name in getattr(args, "jobs", []) if name not in JOBS]
    if unknown:
        parser.error(f"unknown jobs {unknown}; one of {', '.join(JOBS)}")
    configure_logging()  # plain text, every line through redact (issue 14)
    if args.command == "serve":
        asyncio.run(serve(args.port))
        return 0
    return asyncio.run(run_once(args.jobs))


if __name__ == "__main__":
    sys.exit(main())
