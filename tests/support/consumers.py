"""Stop, crash and restart the stack's consumer processes from a test."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

from confluent_kafka import Producer

from apps.common.topology import kafka_bootstrap
from infra import proc, stack
from infra.paths import REPO, ensure_dirs, log_file
from outbox.dead_letters import dead_letter_topic
from outbox.events import payload_as_dict
from outbox.topics import ensure_topics
from tests.support.db import connect
from tests.support.kafka import delete_group_topics
from tests.support.orders import order_created, produce_raw


def _process(name: str) -> stack.Process:
    return next(p for p in stack.app_processes() if p.name == name)


async def stop(name: str) -> None:
    await asyncio.to_thread(proc.stop, name)


async def kill(name: str) -> None:
    await asyncio.to_thread(proc.kill, name)


async def start(name: str, *extra_args: str) -> None:
    process = _process(name)
    if extra_args:
        process = stack.Process(process.name, [*process.argv, *extra_args], process.probe, process.url)
    await asyncio.to_thread(stack.start_process, process)


class ThrowawayConsumer:
    """A consumer process of its own (tests.support.throwaway_group) on its own group, topic and table.

    It is started and killed like the stack's consumers (python -m outbox.runner), but nothing else reads
    its topic or its table, so a test may crash it, starve it of its database, or restart it at will.
    """

    def __init__(self, *, metrics_port: int | None = None, database_url: str | None = None) -> None:
        tag = uuid.uuid4().hex[:10]
        self.group = f"test-throwaway-{tag}"
        self.topic = f"test.throwaway.{tag}"
        self.table = f"throwaway_{tag}"
        self.metrics_port = metrics_port
        self.database_url = database_url
        self.log = log_file(f"throwaway-{tag}")
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ThrowawayConsumer:
        # The dead-letter topic too, so a test can tail it before the process starts.
        ensure_topics(kafka_bootstrap(), [self.topic, dead_letter_topic(self.group)], partitions=1)
        conn = await connect("customer")
        try:
            await conn.execute(f'CREATE TABLE "{self.table}" (event_id uuid NOT NULL, customer_id varchar(36))')
        finally:
            await conn.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()
        await asyncio.to_thread(delete_group_topics, self.group, self.topic)
        conn = await connect("customer")
        try:
            await conn.execute(f'DROP TABLE IF EXISTS "{self.table}"')
            await conn.execute("DELETE FROM inbox WHERE consumer_group = $1", self.group)
        finally:
            await conn.close()

    def env(self) -> dict[str, str]:
        """The environment that makes tests.support.throwaway_group this group (its process, or a CLI's)."""
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "THROWAWAY_GROUP": self.group,
            "THROWAWAY_TOPIC": self.topic,
            "THROWAWAY_TABLE": self.table,
        }
        if self.database_url:
            env["THROWAWAY_DATABASE_URL"] = self.database_url
        return env

    def start(self) -> None:
        env = self.env()
        argv = [sys.executable, "-m", "outbox.runner", "tests.support.throwaway_group", "--batch-size", "50"]
        if self.metrics_port:
            argv += ["--metrics-port", str(self.metrics_port)]
        ensure_dirs()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown, no offset commit, no leave-group request."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def terminate(self) -> int:
        """SIGTERM, and the exit status once the process is gone (the event loop keeps serving meanwhile)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 60)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def produce(self, customer: str | None = None, producer: Producer | None = None) -> uuid.UUID:
        created = order_created(customer or str(uuid.uuid4()))
        return produce_raw(
            self.topic,
            key=str(created.order_id),
            event_type="order.created",
            payload=payload_as_dict(created),
            producer=producer,
        )

    def produce_many(self, count: int) -> list[uuid.UUID]:
        """``count`` records through one producer (`produce` alone makes a producer and flushes it per record)."""
        producer = Producer({"bootstrap.servers": kafka_bootstrap()})
        ids = []
        for _ in range(count):
            ids.append(self.produce(producer=producer))
            producer.poll(0)  # serve delivery reports, or its local queue fills up
        assert producer.flush(30) == 0
        return ids

    async def outcomes(self, event_ids: list[uuid.UUID]) -> list[str]:
        """The group's inbox outcomes of these events (`applied`, `dead_lettered`)."""
        conn = await connect("customer")
        try:
            rows = await conn.fetch(
                "SELECT outcome FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2::uuid[])",
                self.group,
                event_ids,
            )
            return [r["outcome"] for r in rows]
        finally:
            await conn.close()

    async def applied(self, event_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Every row the handler wrote for these events (a duplicate would appear twice)."""
        conn = await connect("customer")
        try:
            rows = await conn.fetch(f'SELECT event_id FROM "{self.table}" WHERE event_id = ANY($1::uuid[])', event_ids)
            return [r["event_id"] for r in rows]
        finally:
            await conn.close()
