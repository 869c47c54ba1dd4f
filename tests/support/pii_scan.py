"""Look for a person's data everywhere the stack keeps data: every text and JSON column of every table of
every service database, every Redis key and value, and what Kafka received on the project's topics (and
their dead letters) since a starting mark. What is found is reported by place, never by value.

The person's values are made up when the test starts (uuid-based), so only what was written after that
can hold them: in PostgreSQL, row versions whose inserting transaction had not finished when the test
took its mark (``xmin`` at least the mark's snapshot xmin; every service database lives in one cluster,
so one transaction-id mark serves them all), in Kafka the records past each partition's end at the mark.
That bounds the work without leaving out a single row that could hold the values: an UPDATE writes a
new row version with a new ``xmin``, so a row changed to hold them is always read.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, TopicPartition
from redis.asyncio import Redis

from apps.common.topology import SERVICES, ServiceSpec, kafka_bootstrap, redis_url
from outbox.decoding import raw_headers, where
from tests.support.db import connect

_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")
_COLUMNS = """
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = 'public' AND data_type = ANY($1::text[])
    ORDER BY table_name, ordinal_position
"""


@dataclass(frozen=True)
class Person:
    """Values unique to one test run (uuid-based), so no other test's data can match them."""

    email: str
    phone: str
    first_name: str
    last_name: str

    @classmethod
    def unique(cls) -> Person:
        tag = uuid.uuid4()
        digits = f"{tag.int % 10**10:010d}"
        return cls(
            email=f"Erase.Me.{tag.hex[:12]}@Example.com",
            phone=f"+49{digits}",
            first_name=f"Fenna{tag.hex[12:20]}",
            last_name=f"Quist{tag.hex[20:28]}",
        )

    @property
    def needles(self) -> tuple[str, ...]:
        """What must not be readable anywhere, lower-cased (every search is case-insensitive): the email
        (the API stores it lower-cased), the phone with and without its '+', each name."""
        return tuple(
            v.lower() for v in (self.email, self.phone, self.phone.lstrip("+"), self.first_name, self.last_name)
        )


async def database_mark() -> int:
    """The cluster's oldest transaction still running now (as an ``xid``): rows written later are newer."""
    conn = await connect(SERVICES[0].name)
    try:
        return int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint % 4294967296"))
    finally:
        await conn.close()


async def database_findings(needles: Iterable[str], since: int) -> list[str]:
    """'<database>.<table>' for every table of every service database where some text or JSON column of a
    row written since the mark ``since`` holds one of ``needles`` (each table in one query)."""
    patterns = [f"%{needle}%" for needle in needles]
    found = await asyncio.gather(*(_database_findings(spec, patterns, since) for spec in SERVICES))
    return [place for places in found for place in places]


async def _database_findings(spec: ServiceSpec, patterns: list[str], since: int) -> list[str]:
    conn = await connect(spec.name)
    try:
        columns: dict[str, list[str]] = {}
        for row in await conn.fetch(_COLUMNS, list(_TEXT_TYPES)):
            columns.setdefault(row["table_name"], []).append(row["column_name"])
        found = []
        for table, names in columns.items():
            holds = " OR ".join(f'lower("{c}"::text) LIKE ANY($1::text[])' for c in names)
            query = f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE age(xmin) <= age($2::xid) AND ({holds}))'
            if await conn.fetchval(query, patterns, since):
                found.append(f"{spec.database}.{table}")
        return found
    finally:
        await conn.close()


async def redis_findings(needles: Iterable[str]) -> list[str]:
    """Every Redis key whose name or value (any type) holds one of ``needles``."""
    wanted = [n.encode() for n in needles]
    client = Redis.from_url(redis_url())
    found: list[str] = []
    try:
        async for key in client.scan_iter(count=1000):
            parts = [key, *await _values(client, key)]
            if any(n in part.lower() for part in parts for n in wanted):
                found.append(key.decode(errors="replace"))
    finally:
        await client.aclose()
    return found


def _as_bytes(value: bytes | str) -> bytes:
    # The client decodes nothing (no decode_responses), but redis-py's types allow str for every reply.
    return value.encode() if isinstance(value, str) else value


async def _values(client: Redis, key: bytes) -> list[bytes]:
    kind = _as_bytes(await client.type(key)).decode()
    if kind == "string":
        value = await client.get(key)
        return [] if value is None else [_as_bytes(value)]
    if kind == "hash":
        return [_as_bytes(item) for pair in (await client.hgetall(key)).items() for item in pair]
    if kind == "list":
        return [_as_bytes(item) for item in await client.lrange(key, 0, -1)]
    if kind == "set":
        return [_as_bytes(item) for item in await client.smembers(key)]
    if kind == "zset":
        return [_as_bytes(item) for item in cast("list[bytes]", await client.zrange(key, 0, -1))]  # no scores
    return []  # streams and others: the stack keeps none


def _consumer() -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": kafka_bootstrap(),
            "group.id": f"test-pii-scan-{uuid.uuid4()}",  # throwaway: nothing is committed
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def project_topics(consumer: Consumer) -> list[str]:
    """The aggregates' topics (commerce.*) and every consumer group's dead letters (*.dlq)."""
    topics = consumer.list_topics(timeout=10).topics
    return sorted(t for t in topics if t.startswith("commerce.") or t.endswith(".dlq"))


def kafka_marks() -> dict[tuple[str, int], int]:
    """Each partition's end now: a later scan reads what arrived after this point only."""
    consumer = _consumer()
    try:
        return {
            (topic, partition): consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            for topic in project_topics(consumer)
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        }
    finally:
        consumer.close()


@dataclass(frozen=True)
class Record:
    topic: str
    key: str | None
    event_type: str | None
    value: bytes


@dataclass
class KafkaScan:
    findings: list[str]  # 'topic/partition@offset' of records holding a needle (key, headers or value)
    records: list[Record]  # every record read

    def events(self, event_type: str, key: str) -> list[dict[str, Any]]:
        """The payloads of the records of ``event_type`` about aggregate ``key``."""
        return [json.loads(r.value) for r in self.records if (r.event_type, r.key) == (event_type, key)]


def scan_kafka(marks: dict[tuple[str, int], int], needles: Iterable[str], timeout: float = 20.0) -> KafkaScan:
    """Read every project topic from ``marks`` (the start of partitions that appeared since) to its end now."""
    wanted = [n.encode() for n in needles]
    consumer = _consumer()
    scan = KafkaScan([], [])
    try:
        ends = kafka_marks()
        todo = {tp: end for tp, end in ends.items() if end > marks.get(tp, 0)}
        consumer.assign([TopicPartition(t, p, marks.get((t, p), 0)) for (t, p) in todo])
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                topic, partition, offset = where(message)
                tp = (topic, partition)
                headers = {name: value or b"" for name, value in raw_headers(message)}
                key, value = message.key(), message.value() or b""
                if any(n in part.lower() for part in [key or b"", value, *headers.values()] for n in wanted):
                    scan.findings.append(f"{topic}/{partition}@{offset}")
                event_type = headers.get("event_type", b"").decode() or None
                scan.records.append(Record(topic, None if key is None else key.decode(), event_type, value))
                if tp in todo and offset + 1 >= todo[tp]:
                    del todo[tp]
        assert not todo, f"kafka scan did not reach the end of {sorted(todo)} in {timeout}s"
    finally:
        consumer.close()
    return scan
