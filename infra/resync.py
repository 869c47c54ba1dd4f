"""The outbox re-sync after the cluster changed under the connectors: a new slot each, recent rows published again.

Logical replication slots are in no backup and on no standby (PostgreSQL 15), so after a point-in-time
recovery (infra/pitr.py) or a promotion (infra/promote.py) every Debezium connector points at a slot that
does not exist, with offsets from WAL it can no longer read. Outbox rows committed then that Debezium had
not read would never reach Kafka: a new slot streams only what is committed after it is made. So each
connector is stopped, its offsets deleted, and it resumes with snapshot.mode=no_data (a new slot, no re-read
of whole outbox tables); then each database's outbox rows created since a moment (``Since``: the caller's
choice) are deleted and re-inserted, in chunks of RESEND_CHUNK rows each committed on its own and in the
outbox's order, so Debezium publishes them again. What a consumer had applied already its inbox drops; what
was in flight is applied. Then the connectors get their own config back.

What to re-send is decided by ``created_at``: rows created since the moment each database's connector may
have stopped reading, less RESEND_WINDOW (a transaction's rows carry its start time, ``now()``, and commit
later): pitr's moment is its target, the promotion's each connector's last read (``last_read``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

from apps.common.topology import connect_url
from infra import connectors, postgres
from outbox.models import OUTBOX_TABLE

RESEND_WINDOW = dt.timedelta(minutes=15)
# Rows deleted and re-inserted per transaction: a year of outbox rows in one transaction would hold its locks,
# its WAL and Debezium's decoding of it (one transaction is published only once it is all decoded) together.
RESEND_CHUNK = 10_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Per database: re-send its outbox rows created since then.
Since = Mapping[str, dt.datetime]
Say = Callable[[str], None]


def parse_time(value: str, option: str = "--to") -> dt.datetime:
    """An ISO 8601 moment; one without a zone is UTC (as the seed's backup times are)."""
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError as exc:
        raise SystemExit(f"{option}: not an ISO 8601 time: {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def connector_names() -> list[str]:
    return [connectors.load(path, {})[0] for path in connectors.connector_files()]


def connector_databases() -> dict[str, str]:
    """Each connector's database, by connector name."""
    loaded = [connectors.load(path, {}) for path in connectors.connector_files()]
    return {name: config["database.dbname"] for name, config in loaded}


def _connect(method: str, path: str) -> Any:
    return connectors._request(method, f"{connect_url()}{path}")


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} after {timeout:.0f}s")
        time.sleep(0.5)


def stop_connectors(names: list[str], say: Say) -> None:
    """Each connector STOPPED (its task shut down, its offsets kept): it neither reads nor makes a slot."""
    for name in names:
        _connect("PUT", f"/connectors/{name}/stop")
    wait_for("connectors not STOPPED", lambda: all(connectors.status(n, connect_url())[0] == "STOPPED" for n in names))
    say(f"{len(names)} connectors stopped")


def resume_connectors(names: list[str]) -> None:
    """Each connector resumed as it was (its offsets and config unchanged)."""
    for name in names:
        _connect("PUT", f"/connectors/{name}/resume")


def last_read(name: str) -> dt.datetime | None:
    """The commit time of the last transaction the connector read (its offsets' ``ts_usec``; heartbeats move it
    every heartbeat.interval.ms while it streams), or None if Connect holds no offsets for it."""
    offsets = _connect("GET", f"/connectors/{name}/offsets").get("offsets", [])
    moments = [entry["offset"]["ts_usec"] for entry in offsets if "ts_usec" in entry.get("offset", {})]
    return EPOCH + dt.timedelta(microseconds=min(moments)) if moments else None


def since_last_read(names: list[str]) -> dict[str, dt.datetime | None]:
    """Per database, the moment from which its connector may not have read: its last read less RESEND_WINDOW."""
    databases = connector_databases()
    since: dict[str, dt.datetime | None] = {}
    for name in names:
        moment = last_read(name)
        since[databases[name]] = None if moment is None else moment - RESEND_WINDOW
    return since


def resume_connectors_without_offsets(names: list[str], say: Say) -> None:
    """Offsets deleted, snapshot.mode=no_data, resumed: each makes its slot anew and streams from now."""
    for name in names:
        _connect("DELETE", f"/connectors/{name}/offsets")
    for path in connectors.connector_files():  # config only: they stay STOPPED
        connectors.deploy(*connectors.load(path, {"snapshot.mode": "no_data"}), connect_url())
    resume_connectors(names)
    connectors.wait_running(names, connect_url(), timeout=120)
    slots = connectors.slot_names()

    def slots_active() -> bool:
        rows = postgres.psql_admin("SELECT slot_name FROM pg_replication_slots WHERE active").split()
        return slots <= set(rows)

    wait_for("replication slots not active", slots_active)
    say(f"{len(names)} connectors streaming from new slots")


def resend_outbox(since: Since, say: Say, chunk: int = RESEND_CHUNK) -> int:
    """Delete and re-insert each database's outbox rows created since its moment, so Debezium publishes them
    again (its EventRouter ignores the deletes); ``chunk`` rows per transaction. Returns the rows re-sent."""
    total = 0
    for database, moment in since.items():
        count = int(postgres.psql_admin(resend_statements(moment, chunk), database=database).strip() or 0)
        total += count
        say(f"{database}: {count} outbox rows since {moment.isoformat()} published again")
    return total


def resend_statements(since: dt.datetime, chunk: int = RESEND_CHUNK) -> list[str]:
    """One database's rows created since ``since``, as they are when it starts, deleted and re-inserted ``chunk``
    at a time, each chunk a transaction, one after the other; the last statement counts them (one session).

    Debezium publishes in commit order, so each aggregate's events must be re-inserted in event_version order.
    created_at alone does not give it: it is the transaction's start, and a writer that started first may take
    the aggregate's next version after another commits (the version row's lock). So the plan (a temporary table,
    one pass over the rows) orders each row by the latest created_at among its aggregate's versions up to its own,
    then aggregate and version: an aggregate's rows in version order, the rest in time order; each chunk then
    reads its rows by plan position (no re-scan of the rows since ``since`` per chunk). Rows committed after the
    plan is made are not in it: the new slot publishes those."""
    plan = (
        f"CREATE TEMP TABLE {_PLAN} AS SELECT id, row_number() OVER (ORDER BY at, aggregate_id, event_version) AS n "
        "FROM (SELECT id, aggregate_id, event_version, "
        "max(created_at) OVER (PARTITION BY aggregate_id ORDER BY event_version) AS at "
        f"FROM {OUTBOX_TABLE} WHERE created_at >= '{since.isoformat()}') AS rows"
    )
    chunks = f"""DO $$
DECLARE
    planned bigint := (SELECT count(*) FROM {_PLAN});
    done bigint := 0;
BEGIN
    WHILE done < planned LOOP
        WITH moved AS (
            DELETE FROM {OUTBOX_TABLE} AS e USING {_PLAN} AS p
            WHERE e.id = p.id AND p.n > done AND p.n <= done + {chunk} RETURNING e.*
        )
        INSERT INTO {OUTBOX_TABLE}
        SELECT moved.* FROM moved JOIN {_PLAN} AS p ON p.id = moved.id AND p.n > done AND p.n <= done + {chunk}
        ORDER BY p.n;
        COMMIT;
        done := done + {chunk};
    END LOOP;
END $$"""
    return [plan, f"CREATE INDEX ON {_PLAN} (n)", f"ANALYZE {_PLAN}", chunks, f"SELECT count(*) FROM {_PLAN}"]


_PLAN = "resend_plan"


def resync(names: list[str], since: Since, say: Say) -> int:
    """Every connector on a new slot, then each database's rows since its moment published again, then the
    connectors' own config (snapshot.mode back; their offsets now exist). Returns the rows re-sent."""
    stop_connectors(names, say)  # DELETE .../offsets needs a stopped connector (pitr's are already)
    resume_connectors_without_offsets(names, say)
    count = resend_outbox(since, say)
    connectors.deploy_all()
    say("connectors on their own config")
    return count
