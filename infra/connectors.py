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
from infra import proc
from infra.paths import REPO
from outbox.config import topic_prefix
from outbox.routing import ROUTE_FIELD, project_streams, route_topic_regex, topic_for_event

CONNECTORS = REPO / "connectors"
# Connectors once deployed and no longer in connectors/, by name, with the database and slot each streamed.
# A deploy deletes them from Connect and drops their slot: an idle slot keeps its WAL forever, and a running
# one costs a walsender that decodes every WAL record of the cluster plus a Connect task. analytics-outbox:
# the analytics service writes no events (docs/decisions.md, "An outbox nothing writes is not streamed").
RETIRED: dict[str, tuple[str, str]] = {"analytics-outbox": ("analytics_db", "analytics_outbox")}
# Event topics keep their events for the replay window: delete policy, one year, never compaction.
EVENT_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(365 * 24 * 3600 * 1000)}
EVENT_TOPIC_PARTITIONS = 3
# How long the deploy waits for Kafka's metadata before it says Kafka cannot be reached.
METADATA_TIMEOUT_S = 10.0


def _request(method: str, url: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


TOPIC_REPLACEMENT = "transforms.outbox.route.topic.replacement"
ROUTE_BY_FIELD = "transforms.outbox.route.by.field"
TOPIC_REGEX = "transforms.outbox.route.topic.regex"


def topic_replacement(prefix: str | None = None) -> str:
    """The EventRouter's topic for an aggregate: the outbox library's topic_for, in Debezium's syntax."""
    return f"{prefix or topic_prefix()}.${{routedByValue}}"


def routing(prefix: str | None = None) -> dict[str, str]:
    """The EventRouter's routing keys: by event type, to its stream's topic or its aggregate's
    (outbox.routing), under the project's prefix ([tool.outbox] topic_prefix and streams; OUTBOX_TOPIC_PREFIX,
    OUTBOX_STREAMS)."""
    return {
        ROUTE_BY_FIELD: ROUTE_FIELD,
        TOPIC_REGEX: route_topic_regex(project_streams()),
        TOPIC_REPLACEMENT: topic_replacement(prefix),
    }


def load(path: Path, overrides: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A connector file's name and config; its routing is the project's (``routing``), so the files'
    literals (checked against it by a unit test) never drift."""
    spec = json.loads(path.read_text())
    return spec["name"], {**spec["config"], **routing(), **overrides}


def event_topics() -> set[str]:
    """Every topic an event can be routed to: each aggregate's, and each stream's."""
    return {topic_for(aggregate) for spec in SERVICES for aggregate in spec.aggregates} | {
        f"{topic_prefix()}.{stream}" for stream in project_streams()
    }


def ensure_event_topics(bootstrap: str) -> None:
    """Create every event topic up front so consumers can subscribe before the first event."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = event_topics()
    try:
        existing = set(admin.list_topics(timeout=METADATA_TIMEOUT_S).topics)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        raise KafkaTransportError(error.str() if hasattr(error, "str") else str(error)) from None
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
    proc.waiting()  # `up`'s lock let go (infra/stack.py): a wait needs none, and a `just start` would queue behind it
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
        try:
            dropped = asyncio.run(_drop_slot(database, slot, wait_s))
        except (OSError, asyncpg_errors()) as exc:
            # Deploying to a Connect cluster elsewhere (README, Connectors) from a machine that reaches no
            # PostgreSQL at PGHOST_OVERRIDE:PG_PORT: the connectors do not depend on the slot being gone, so
            # the deploy goes on and says what is left to do by hand.
            print(
                f"slot {slot}: not checked ({type(exc).__name__}: {exc}): the deploy drops a retired connector's "
                f"slot as {CDC_ROLE} at PGHOST_OVERRIDE:PG_PORT ({pg_host()}:{pg_port()}); point them at the "
                f"connectors' database, or run there: SELECT pg_drop_replication_slot('{slot}') "
                f"FROM pg_replication_slots WHERE slot_name = '{slot}' (in {database})",
                file=sys.stderr,
            )
            continue
        if dropped:
            print(f"slot {slot}: dropped (its connector is retired)")


def asyncpg_errors() -> type[Exception]:
    """asyncpg's base error (refused password, unknown database), imported only where a slot is dropped."""
    import asyncpg

    base: type[Exception] = asyncpg.PostgresError
    return base


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


def left_topics() -> dict[str, list[str]]:
    """Per consumer group, the aggregate topics that some event type it handles leaves for a stream's topic:
    where a consumer deployed before the streams still reads those types, and must have read all of them
    before its successor starts on the stream's topic (per aggregate, the old tail comes before the new head)."""
    from outbox import groups

    found: dict[str, list[str]] = {}
    for module in groups.consumer_modules():
        group = module.group
        old = {
            topic_for_event(t, streams=())
            for t in group.event_types
            if topic_for_event(t, streams=()) != topic_for_event(t)
        }
        if old:
            found[group.name] = sorted(old)
    return found


def wait_drained(bootstrap: str, timeout: float) -> bool:
    """Wait until every group of ``left_topics`` has committed each of those topics up to its end as it is
    now: run it after deploying connectors that route a stream to its own topic (nothing of that stream
    reaches the old topic any more), and restart those groups' consumers once it returns True."""
    from outbox.replay import plan

    ends = {
        group: {
            (p.topic, p.partition): (p.target, p.end)
            for p in plan(group, topics, to_earliest=True, to_datetime=None, to_offset=None, bootstrap=bootstrap)
        }
        for group, topics in left_topics().items()
    }
    deadline = time.monotonic() + timeout
    while True:
        behind = {}
        for group, topics in left_topics().items():
            committed = plan(group, topics, to_earliest=True, to_datetime=None, to_offset=None, bootstrap=bootstrap)
            lag = sum(
                end - max(p.current, low)
                for p in committed
                for low, end in [ends[group][(p.topic, p.partition)]]
                if max(p.current, low) < end
            )
            if lag:
                behind[group] = lag
        if not behind:
            print("drained: " + ", ".join(f"{g} ({', '.join(t)})" for g, t in left_topics().items()), flush=True)
            return True
        if time.monotonic() > deadline:
            print(f"still behind after {timeout:.0f}s: {behind}", file=sys.stderr)
            return False
        print(f"waiting for {behind} events to be read on the old topics", flush=True)
        time.sleep(1)


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
    parser.add_argument(
        "--wait-drained",
        action="store_true",
        help="deploy nothing; wait until the groups a stream moves events away from have read their old topics "
        "to the end (docs/events/routing.md, 'Moving event types to a stream')",
    )
    args = parser.parse_args(argv)
    if args.wait_drained:
        return 0 if wait_drained(args.bootstrap or kafka_bootstrap(), args.timeout) else 1
    bad = [item for item in args.set if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        parser.error(f"--set takes KEY=VALUE (e.g. --set database.hostname=pg.internal), not {bad[0]!r}")
    overrides = dict(item.split("=", 1) for item in args.set)
    base_url = args.connect_url or connect_url()
    bootstrap = args.bootstrap or kafka_bootstrap()
    try:
        deploy_all(args.files or None, overrides, base_url, bootstrap, args.timeout)
    except urllib.error.HTTPError as exc:
        print(
            f"Kafka Connect at {base_url} refused {exc.url}: HTTP {exc.code}: {connect_message(exc)}", file=sys.stderr
        )
        return 1
    except urllib.error.URLError as exc:
        print(
            f"cannot reach Kafka Connect at {base_url} ({exc.reason}): --connect-url or $CONNECT_URL", file=sys.stderr
        )
        return 1
    except KafkaTransportError as exc:
        print(
            f"cannot reach Kafka at {bootstrap} to create the event topics ({exc}): --bootstrap or $KAFKA_BOOTSTRAP",
            file=sys.stderr,
        )
        return 1
    return 0


class KafkaTransportError(Exception):
    """The admin client got no metadata from the bootstrap servers: nothing was created or deployed."""


def connect_message(exc: urllib.error.HTTPError) -> str:
    """Kafka Connect's own words for a refused request (its JSON ``message``: e.g. the config's errors)."""
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return exc.reason
    return str(body.get("message") or exc.reason) if isinstance(body, dict) else exc.reason


if __name__ == "__main__":
    sys.exit(main())
