"""`just pitr --to TIME`: restore the whole cluster to a moment with pgBackRest, then re-sync the outbox.

    just pitr --to "2026-11-26 03:15:00+00" [--resend-since "2026-11-26 03:00:00+00"] [--dry-run]

What a restore does not bring back by itself, and what the steps below do about it (docs/operations.md,
"Point-in-time recovery", explains each one):

1. `pgbackrest check` ships the current WAL, so the archive reaches past the target.
2. Every Debezium connector is STOPPED and every consumer process stopped: nothing may read or publish
   while the databases move back in time.
3. The replica and the primary stop; `pgbackrest restore --delta --type=time` rewinds the primary's data
   directory (after `just promote`, the promoted one: infra/postgres.py, PRIMARY_RECORD);
   PostgreSQL replays the archive to the target and is promoted onto a new timeline.
4. Consumer groups skip to the end of their topics. Events published after the target ("phantoms": their
   rows are gone from the restored outboxes) must not be applied again; the projections were rewound to
   the target together with the inboxes, so they hold exactly what was applied before it.
5. Each connector's offsets are deleted (they point past the new timeline's WAL, so Debezium would skip
   new changes until the WAL caught up), and it resumes with snapshot.mode=no_data: no 100k-row snapshot,
   a new replication slot (slots are not in a backup) from now on.
6. Outbox rows created since --resend-since (default: 15 minutes before the target) are deleted and
   re-inserted, each aggregate's in event_version order, RESEND_CHUNK rows per transaction (infra/resync.py),
   so Debezium publishes them again: the consumers' inboxes drop what they had applied, and apply what was in
   flight at the target.
7. The connectors get their own config back, the replica is made again, the consumers start.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from apps.common.read_routing import lsn_to_int
from apps.common.topology import SERVICES
from infra import backup_physical, postgres, proc, replay, replica, resync, stack
from infra.resync import parse_time
from outbox import groups
from outbox import replay as outbox_replay
from outbox.config import kafka_bootstrap


def restore_data(target: dt.datetime, data: Path) -> None:
    """pgBackRest rewinds a stopped cluster's data directory; recovery then promotes at the target."""
    backup_physical.pgbackrest(
        "--delta",
        "--type=time",
        f"--target={target.isoformat(sep=' ')}",
        "--target-action=promote",
        f"--pg1-path={data}",
        "restore",
    )


def say(line: str) -> None:
    print(f"pitr: {line}", flush=True)


def consumer_components() -> list[str]:
    """Every component that runs a consumer group: the services' consumers and processes such as
    order-references (infra.replay knows which runs which)."""
    running = {name for module in groups.consumer_modules() for name in replay.consumer_components(module.group.name)}
    return sorted(running)


def wait_promoted() -> None:
    """PostgreSQL accepts read-only connections while it replays; it is done once out of recovery."""

    def promoted() -> bool:
        try:
            return postgres.psql_admin("SELECT pg_is_in_recovery()").strip() == "f"
        except RuntimeError:
            return False

    resync.wait_for("pitr: PostgreSQL still in recovery", promoted, timeout=600)
    # pgBackRest wrote the target into postgresql.auto.conf; a replica copied from here would stop at it.
    for setting in ("recovery_target_time", "recovery_target_action"):
        postgres.psql_admin(f"ALTER SYSTEM RESET {setting}")
    postgres.psql_admin("SELECT pg_reload_conf()")
    postgres.bootstrap()


def start_restored_primary() -> None:
    # Its bootstrap may run while recovery still refuses writes: wait_promoted runs it again.
    with contextlib.suppress(proc.StartError, RuntimeError):
        postgres.start()
    wait_promoted()


def skip_consumers_to_end(bootstrap: str) -> None:
    """Step 4: each group's committed offsets move to its topics' ends (past the phantom events)."""
    for module in groups.consumer_modules():
        group = module.group
        plans = outbox_replay.plan(
            group.name, group.topics, to_earliest=False, to_datetime=None, to_offset=0, bootstrap=bootstrap
        )
        at_end = [
            outbox_replay.PartitionPlan(p.topic, p.partition, p.current, p.end, p.end) for p in plans if p.end >= 0
        ]
        skipped = sum(max(p.end - max(p.current, 0), 0) for p in plans)
        outbox_replay.reset(group.name, at_end, bootstrap)
        print(f"pitr: {group.name} moved to the end of its topics ({skipped} unread events skipped)", flush=True)


def drop_stale_slots() -> None:
    """Slots are not in a backup, but a restore over a data directory that had them may keep some."""
    postgres.psql_admin("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active")


def rebuild_replica() -> None:
    t0 = time.monotonic()
    replica.rebuild()
    print(f"pitr: replica made again in {time.monotonic() - t0:.1f}s", flush=True)


def start_consumers(names: list[str]) -> None:
    """In parallel: each start waits for its group to own partitions, mostly idle time."""
    known = stack.components()
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        list(pool.map(lambda name: known[name].start(), names))
    print(f"pitr: {len(names)} consumers started", flush=True)


def groups_left_running(bootstrap: str) -> list[str]:
    """Groups that still have live members once our consumers are stopped: consumers run elsewhere."""
    return [m.group.name for m in groups.consumer_modules() if not replay.wait_until_empty(m.group.name, bootstrap, 30)]


def pitr(target: dt.datetime, since: dt.datetime) -> None:
    started = time.monotonic()
    if target > dt.datetime.now(dt.UTC):
        raise SystemExit("pitr: the target is in the future")
    bootstrap = kafka_bootstrap()
    if proc.running(backup_physical.FIRST_BACKUP) or not backup_physical.backups():
        raise SystemExit("pitr: no backup to restore from yet (the first one may still be running)")
    if base_backup(target, backup_physical.backups()) is None:
        # Checked before anything stops: pgBackRest would restore a later backup, whose recovery can never
        # reach an earlier target, and PostgreSQL would refuse to start on it.
        raise SystemExit(f"pitr: no backup ended before {target.isoformat()}; `just pitr --to T --dry-run` lists them")
    # Held throughout: a `just up` or `just start postgres` meanwhile would start PostgreSQL on a data
    # directory that pgBackRest is rewriting (the drill saw one try), or the replica from its old copy.
    with stack.exclusive():
        backup_physical.pgbackrest("check")
        names = resync.connector_names()
        resync.stop_connectors(names, say)
        consumers = consumer_components()
        with ThreadPoolExecutor(max_workers=len(consumers) or 1) as pool:
            list(pool.map(stack.stop_component, consumers))
        if running_elsewhere := groups_left_running(bootstrap):
            resync.resume_connectors(names)
            start_consumers(consumers)
            raise SystemExit(f"pitr: nothing restored; groups with consumers we did not stop: {running_elsewhere}")
        print(f"pitr: connectors and consumers stopped at {time.monotonic() - started:.1f}s", flush=True)
        replica.stop()
        postgres.stop()
        t0 = time.monotonic()
        restore_data(target, postgres.DATA)
        print(f"pitr: data directory restored in {time.monotonic() - t0:.1f}s", flush=True)
        start_restored_primary()
        print(f"pitr: recovered to {target.isoformat()} and promoted at {time.monotonic() - started:.1f}s", flush=True)
        drop_stale_slots()
        with ThreadPoolExecutor(max_workers=1) as background:
            # The replica's copy of the new timeline is made meanwhile; reads use the primary until it is up.
            rebuilt = background.submit(rebuild_replica)
            skip_consumers_to_end(bootstrap)
            resync.resync(names, dict.fromkeys((spec.database for spec in SERVICES), since), say)
            say(f"outbox re-synced at {time.monotonic() - started:.1f}s")
            start_consumers(consumers)
            rebuilt.result()
    print(f"pitr: done in {time.monotonic() - started:.1f}s; take a backup on the new timeline: just backup --incr")


def current_lsn() -> int | None:
    """The primary's WAL position now, or None if it does not answer (the dry run still lists the backups)."""
    try:
        return lsn_to_int(postgres.psql_admin("SELECT pg_current_wal_lsn()").strip())
    except Exception:  # a dry run must print its plan whatever state the cluster is in
        return None


def _ended(entry: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(entry["timestamp"]["stop"], dt.UTC)


def base_backup(target: dt.datetime, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The backup a recovery to ``target`` starts from: the newest that ended before it (pgBackRest's choice)."""
    usable = [entry for entry in entries if _ended(entry) <= target]
    return usable[-1] if usable else None


def dry_run_plan(
    target: dt.datetime, since: dt.datetime, entries: list[dict[str, Any]], lsn_now: int | None
) -> list[str]:
    """What `just pitr --dry-run` prints: the backups, the one a recovery to ``target`` starts from (pgBackRest
    takes the newest that ended before it) and how much WAL it may have to replay from there."""

    lines = [f"backup {e['label']} ({e['type']}) ended {_ended(e).isoformat()}" for e in entries]
    base = base_backup(target, entries)
    if base is None:
        lines.append(f"no backup ended before {target.isoformat()}: there is nothing to recover to that moment from")
        return lines
    lines.append(f"a recovery to {target.isoformat()} starts from {base['label']} and replays the WAL archive from it")
    if lsn_now is not None:
        wal = max(lsn_now - lsn_to_int(base["lsn"]["stop"]), 0)
        lines.append(
            f"WAL written since that backup: {wal / 2**30:.1f} GiB (what a recovery to now replays; "
            "`just backup --incr` makes the next recovery start later)"
        )
    lines.append(f"would restore to {target.isoformat()} and re-publish outbox rows since {since.isoformat()}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--to", required=True, help="the moment to restore to (ISO 8601; UTC if no zone)")
    parser.add_argument(
        "--resend-since", default=None, help="re-publish outbox rows from here (default: 15 min before)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the backups and the plan, change nothing")
    args = parser.parse_args(argv)
    target = parse_time(args.to)
    since = parse_time(args.resend_since, "--resend-since") if args.resend_since else target - resync.RESEND_WINDOW
    if args.dry_run:
        print("\n".join(dry_run_plan(target, since, backup_physical.backups(), current_lsn())))
        return 0
    pitr(target, since)
    return 0


if __name__ == "__main__":
    sys.exit(main())
