"""Run a service's consumer group as a process: `python -m outbox.runner apps.customer.consumers`.

The module names `group` (a ConsumerGroup) and `database_url` (a string, or a function returning one:
the SQLAlchemy asyncpg URL of the database holding the group's inbox and projection), and optionally
`projection_tables` (what `outbox.replay --rebuild` empties). SIGTERM/SIGINT finish the batch in flight,
commit it, and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal

from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from outbox import groups
from outbox.consumer import ConsumerGroup
from outbox.runtime import ConsumerRuntime


def load(module_name: str) -> tuple[ConsumerGroup, str]:
    module = importlib.import_module(module_name)
    return module.group, groups.database_url(module)


async def serve(module_name: str, *, batch_size: int, metrics_port: int | None) -> None:
    group, url = load(module_name)
    engine = create_async_engine(
        url,
        pool_size=2,
        max_overflow=2,
        connect_args={"server_settings": {"application_name": f"consumer:{group.name}"}},
    )
    runtime = ConsumerRuntime(group, async_sessionmaker(engine, expire_on_commit=False), batch_size=batch_size)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop)
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    try:
        await runtime.run()
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("module", help="module defining `group` and `service`, e.g. apps.customer.consumers")
    parser.add_argument("--batch-size", type=int, default=int(os.environ.get("OUTBOX_BATCH_SIZE", "1000")))
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("OUTBOX_METRICS_PORT", "0")) or None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.module, batch_size=args.batch_size, metrics_port=args.metrics_port))


if __name__ == "__main__":
    main()
