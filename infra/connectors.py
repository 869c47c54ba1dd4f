"""Deploy connectors/*.json to Kafka Connect (PUT .../config: idempotent) and wait until they run."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from apps.common.topology import (
    CDC_ROLE,
    SERVICES,
    cdc_password,
    connect_url,
    kafka_bootstrap,
    pg_host,
    pg_port,
    topic_for,
)
from infra.paths import REPO
from outbox.config import topic_prefix

CONNECTORS = REPO / "connectors"
# Connectors once deployed and no longer in connectors/, by name, with the database and slot each streamed.
# A deploy deletes them from Connect and drops their slot: an idle slot keeps its WAL forever, and a running
# one costs a walsender that decodes every WAL record of the cluster plus a Connect task. analytics-outbox:
# the analytics service writes no events (docs/decisions.md, "An outbox nothing writes is not streamed").
RETIRED: dict[str, tuple[str, str]] = {"analytics-outbox": ("analytics_db", "analytics_outbox")}
# Event topics keep their events for the replay window: delete policy, one year, never compaction.
EVENT_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(365 * 24 * 3600 * 1000)}
EVENT_TOPIC_PARTITIONS = 3


def _request(method: str, url: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


TOPIC_REPLACEMENT = "transforms.outbox.route.topic.replacement"


def topic_replacement(prefix: str | None = None) -> str:
    """The EventRouter's topic for an aggregate: the outbox library's topic_for, in Debezium's syntax."""
    return f"{prefix or topic_prefix()}.${{routedByValue}}"


def load(path: Path, overrides: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A connector file's name and config; the topic prefix is the project's ([tool.outbox] topic_prefix,
    OUTBOX_TOPIC_PREFIX), so the files' literal (checked against it by a unit test) never drifts."""
    spec = json.loads(path.read_text())
    return spec["name"], {**spec["config"], TOPIC_REPLACEMENT: topic_replacement(), **overrides}


def ensure_event_topics(bootstrap: str) -> None:
    """Create every aggregate's topic up front so consumers can subscribe before the first event."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = {topic_for(aggregate) for spec in SERVICES for aggregate in spec.aggregates}
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(topic, num_partitions=EVENT_TOPIC_PARTITIONS, replication_factor=-1, config=EVENT_TOPIC_CONFIG)
        for topic in sorted(wanted - existing)
    ]
    for topic, future in admin.create_topics(missing).items() if missing else []:
        try:
            future.result()
        except Exception as exc:  # an already-existing topic (a concurrent deploy) is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        print(f"topic {topic}: created")


def deploy(name: str, config: dict[str, str], base_url: str) -> None:
    _request("PUT", f"{base_url}/connectors/{name}/config", config)
    print(f"connector {name}: config applied")


def status(name: str, base_url: str) -> tuple[str, list[dict[str, Any]]]:
    body = _request("GET", f"{base_url}/connectors/{name}/status")
    return body["connector"]["state"], body.get("tasks", [])


def wait_running(names: list[str], base_url: str, timeout: float) -> None:
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        for name in sorted(pending):
            try:
                state, tasks = status(name, base_url)
            except urllib.error.HTTPError:
                continue
            failed = [t for t in tasks if t["state"] == "FAILED"]
            if state == "FAILED" or failed:
                trace = (failed[0] if failed else {}).get("trace", "")
                raise SystemExit(f"connector {name} FAILED:\n{trace[:4000]}")
            if state == "RUNNING" and tasks and all(t["state"] == "RUNNING" for t in tasks):
                print(f"connector {name}: RUNNING")
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"connectors not RUNNING after {timeout:.0f}s: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(0.5)


def connector_files() -> list[Path]:
    return sorted(CONNECTORS.glob("*.json"))


def slot_names() -> set[str]:
    """The replication slot of every connector the deploy runs."""
    return {load(path, {})[1]["slot.name"] for path in connector_files()}


SLOT_ACTIVE = "SELECT active FROM pg_replication_slots WHERE slot_name = $1"


def retire(base_url: str, wait_s: float = 60.0) -> None:
    """Delete each RETIRED connector still in Connect, then drop its slot once its task let go of it."""
    for name, (database, slot) in RETIRED.items():
        try:
            _request("DELETE", f"{base_url}/connectors/{name}")
            print(f"connector {name}: deleted (retired)")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        if asyncio.run(_drop_slot(database, slot, wait_s)):
            print(f"slot {slot}: dropped (its connector is retired)")


async def _drop_slot(database: str, slot: str, wait_s: float) -> bool:
    """Drop ``slot`` as the CDC role (REPLICATION may drop slots), waiting while a stopping task holds it.

    From where the deploy runs (PGHOST_OVERRIDE, PG_PORT), not the connectors' database.hostname: under
    compose that is the container's name for PostgreSQL, unknown on the host."""
    import asyncpg

    conn = await asyncpg.connect(
        host=pg_host(), port=pg_port(), user=CDC_ROLE, password=cdc_password(), database=database
    )
    try:
        async with asyncio.timeout(wait_s):
            while (active := await conn.fetchval(SLOT_ACTIVE, slot)) is not None:
                if not active:
                    await conn.execute("SELECT pg_drop_replication_slot($1)", slot)
                    return True
                await asyncio.sleep(0.5)
        return False
    except TimeoutError:
        raise SystemExit(f"slot {slot} still in use {wait_s:.0f}s after its connector was deleted") from None
    finally:
        await conn.close()


def deploy_all(
    paths: list[Path] | None = None,
    overrides: dict[str, str] | None = None,
    base_url: str | None = None,
    bootstrap: str | None = None,
    timeout: float = 120.0,
) -> None:
    base_url = base_url or connect_url()
    ensure_event_topics(bootstrap or kafka_bootstrap())
    retire(base_url)
    names = []
    for path in paths or connector_files():
        name, config = load(path, overrides or {})
        deploy(name, config, base_url)
        names.append(name)
    wait_running(names, base_url, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="connector JSON files (default: connectors/*.json)")
    parser.add_argument("--connect-url", default=None, help="Kafka Connect REST URL (default $CONNECT_URL)")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every connector, e.g. --set database.hostname=db.internal",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    deploy_all(args.files or None, overrides, args.connect_url, args.bootstrap, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
