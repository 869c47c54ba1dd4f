"""Run a service's consumer group as a process: `python -m outbox.runner apps.customer.consumers`.

The module names `group` (a ConsumerGroup) and `database_url` (a string, or a function returning one:
the SQLAlchemy asyncpg URL of the database holding the group's inbox and projection), and optionally
`projection_tables` (what `outbox.replay --rebuild` empties). SIGTERM/SIGINT finish the batch in flight,
commit it, leave the group and exit.

With --metrics-port, the process serves GET /metrics, /ready (200 once it owns partitions and its
database answered, 503 before and while a batch is retried, naming what it waits for) and /health on that
port (outbox.probes).

Membership is dynamic, with a 6 s session timeout (the broker's minimum; outbox.kafka_client): a consumer
killed with SIGKILL and restarted applies again within seconds. Measured on the reference machine, a
restart resumes in 5-7 s, most of it the process's own start; static membership (--instance-id) was no
faster here, and a static member that outlives a broker restart can be fenced for good.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
from collections.abc import Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from outbox import groups
from outbox.config import DAY_S, read_duration, read_number
from outbox.consumer import ConsumerGroup
from outbox.probes import run_until_signalled
from outbox.redaction import configure_logging
from outbox.runtime import ConsumerRuntime


def settle_heap() -> None:
    """Keep the cyclic garbage collector off what start-up built, and let it run less often.

    A batch allocates tens of thousands of short-lived objects, most freed by reference counting; with
    the default thresholds the collector ran ~25 times per 1,000-event batch and each full collection
    walked every module, class and SQLAlchemy structure loaded at start-up. Frozen, those are never
    walked again; a first generation of 10,000 objects instead of 700 collects about a tenth as often.
    Measured with bench/consumer.py: 93-101 -> 70-81 us of CPU per event (docs/benchmarks.md, session 18).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


# A consumer sends the same few statements over and over, most with array parameters (the inbox claim, the
# set-based handlers): PostgreSQL plans those afresh on every execution unless told to keep the generic plan
# (pg_prepared_statements showed 0 generic plans in 220 runs of the saga's), which cost the saga's backend a
# third of its CPU per event (3.0 -> 1.9 ms measured with the generic plan).
#
# A statement of a consumer's batch waits at most LOCK_TIMEOUT for a lock (OUTBOX_LOCK_TIMEOUT; "0" waits
# for ever, as before): past it PostgreSQL fails it (55P03), the batch rolls back and is retried as contention
# (outbox.retry), and after CONTENTION_RETRIES_READY such failures GET /ready answers 503 naming the lock
# timeout. Without it a batch behind a row another session held for ~8 minutes (idle in transaction, session
# 31) waited all that time with /ready 200, holding the locks it had taken before (its stock rows, its inbox
# claims) for anyone else to queue behind. 10 s: the bound the replay's rebuild gives a reader of the tables
# it empties (outbox.replay.REBUILD_LOCK_TIMEOUT); far above a wait behind another batch or request
# (milliseconds, a large batch's second or two), a third of max.poll.interval (30 s), and above
# LongRunningQuery's 5 s, so the waiting statement still raises that alert for the on-call.
LOCK_TIMEOUT = "10s"
# librdkafka's consume() takes at most a million messages a call (confluent-kafka refuses more).
MAX_BATCH_SIZE = 1_000_000
CONSUMER_SESSION: dict[str, str] = {"plan_cache_mode": "force_generic_plan", "lock_timeout": LOCK_TIMEOUT}


def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop (installed with uvicorn[standard]) when it is there, as every consumer runs.

    At one event per batch a consumer's event loop wakes several times per event (the prefetch thread's
    result, each database round trip); asyncio's pure-Python loop cost ~0.45 ms of CPU per event more
    than uvloop's (bench.consumer_rate: the loop thread 2.03 -> 1.58 ms per event)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the lock file; a bare install still works
        asyncio.run(main)
        return
    uvloop.run(main)


def load(module_name: str) -> tuple[ConsumerGroup, str]:
    module = importlib.import_module(module_name)
    return module.group, groups.database_url(module)


async def serve(
    module_name: str,
    *,
    batch_size: int,
    metrics_port: int | None,
    instance_id: str | None = None,
    max_backoff: float = 30.0,
    lock_timeout: str = LOCK_TIMEOUT,
) -> None:
    group, url = load(module_name)
    settings = CONSUMER_SESSION | {"lock_timeout": lock_timeout, "application_name": f"consumer:{group.name}"}
    engine = create_async_engine(url, pool_size=2, max_overflow=2, connect_args={"server_settings": settings})
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    runtime = ConsumerRuntime(
        group, sessions, batch_size=batch_size, instance_id=instance_id or None, max_backoff=max_backoff
    )
    settle_heap()
    logging.getLogger("outbox.runtime").info("group %s: instance %s", group.name, instance_id or "(dynamic)")
    await run_until_signalled(
        runtime.run, runtime.stop, port=metrics_port, readiness=runtime.readiness, cleanup=engine.dispose
    )


def batch_size() -> int:
    """OUTBOX_BATCH_SIZE: the most records a batch takes (1000; from 1 to MAX_BATCH_SIZE)."""
    return read_number("OUTBOX_BATCH_SIZE", 1000, minimum=1, maximum=MAX_BATCH_SIZE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module", help="module defining `group` and `database_url`, e.g. apps.customer.consumers")
    parser.add_argument("--batch-size", type=int, default=batch_size())
    port = read_number("OUTBOX_METRICS_PORT", 0, minimum=0, maximum=65535)  # 0: no metrics server
    parser.add_argument("--metrics-port", type=int, default=port or None)
    parser.add_argument(
        "--instance-id",
        default=os.environ.get("OUTBOX_INSTANCE_ID"),
        help="group.instance.id: a static member (KIP-345); unique per process, stable across its restarts",
    )
    parser.add_argument(
        "--max-backoff",
        type=float,
        default=read_number("OUTBOX_MAX_BACKOFF_S", 30.0, above=0, maximum=DAY_S),
        help="the longest wait between retries of a batch or of Kafka (seconds); tests shorten it",
    )
    parser.add_argument(
        "--lock-timeout",
        default=read_duration("OUTBOX_LOCK_TIMEOUT", LOCK_TIMEOUT),
        help="the longest a batch's statement waits for a lock before the batch is retried (PostgreSQL units, "
        "e.g. 10s; 0: no limit)",
    )
    args = parser.parse_args()
    configure_logging()  # plain text, every line through redact (issue 14)
    run(
        serve(
            args.module,
            batch_size=args.batch_size,
            metrics_port=args.metrics_port,
            instance_id=args.instance_id,
            max_backoff=args.max_backoff,
            lock_timeout=args.lock_timeout,
        )
    )


if __name__ == "__main__":
    main()
