"""`just promote`: the read replica becomes the primary, with its WAL archived and a backup of its own.

    just promote          say whether it may and what it would do (nothing changes)
    just promote --yes    do it; then point every process at it (docs/operations.md, "Read replica")
    just promote --resync [--resend-since T]    only the outbox re-sync, when a promotion's did not finish

For a primary whose data directory is lost and will not come back (no automatic failover here).
PostgreSQL's promotion alone left a primary without point-in-time recovery or backups (session 31's
rehearsal): the replica ran with archive_mode=off on its command line, and pgBackRest's config names the
old primary's data directory (pg1-path), against which archive-push resolves the relative segment path
PostgreSQL gives it. The steps, each safe to run again (a promotion cut short is finished by running it
again, and one done by hand with pg_ctl is completed the same way):

1. refuse while the old primary answers on its port (two primaries would take writes) or the replica does not;
2. pgBackRest's config names the replica's data directory, port and socket (backup_physical.primary_site
   reads that from the replica's data directory once promoted, so `just up` writes it the same way);
3. a replica still running with archive_mode=off (its flags until session 32) is restarted without it;
4. pg_ctl promote, unless it is promoted already, and wait until it takes writes: it archives from then on
   (the new timeline's history file first);
5. the archiving settings set on it (ALTER SYSTEM, reloaded);
6. a CHECKPOINT (a promotion only requests its end-of-recovery checkpoint, and until one completes pg_control
   names the old timeline, which pgBackRest's backup refuses); stanza-create: the stanza exists with this
   cluster's system identifier and version (a promoted standby keeps both), so pgBackRest accepts it as it is;
   stanza-upgrade is for a new major version, and a repository of another cluster is refused here rather than
   written to; then pgbackrest check: a WAL segment of the new timeline switched and archived;
7. a full backup, the first of the new primary: a recovery after the promotion starts from it (what the old
   primary had not archived when it was lost is not in the archive, so the older backups may not reach past
   the promotion).

On the stack, between steps 5 and 6, the promoted replica takes the primary's place: its data directory is
recorded as the primary's (infra/postgres.py, PRIMARY_RECORD), which every command reads from then on
(`just up`, `just start|stop postgres|replica`, `just pitr`, `just backup`, pgBackRest's config), and it is
started again as the `postgres` component, on the primary's port and socket, where the services, connectors
and exporters connect: no PG_PORT to change. The old primary's directory is then the replica's, and is not
started as one until `just rebuild-replica --yes` makes it a copy of the new primary.

The stack's connectors (PostgreSQL 15 copies no logical slot to a standby, so none exists on the promoted
cluster): before step 2 every connector is stopped, so none makes a slot on the promoted cluster and streams
on from there past what it had not read, and, per database, the moment from which its connector may not have
read (its offsets' last commit time less infra/resync.py's window) is recorded (RESEND_RECORD), with the
promotion it belongs to (the cluster's system identifier, the standby's data directory, the timeline it is
promoted to): only a run of that promotion reuses it, and it is removed once its re-sync is done; right after
the take-over the outbox re-sync (infra/resync.py, as `just pitr` does it) gives each connector a new slot and
publishes again the rows created since that moment: the events committed on the old primary that reached the
replica but not Kafka. The connectors come first, before the checkpoint and the backup, because every event
waits for them; a re-sync that fails does not stop the backup, and `just promote --resync` finishes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apps.common.topology import connect_url, pg_port, replica_port
from infra import backup_physical, connectors, postgres, proc, replica, resync
from infra.backup_physical import Site

# How long pg_ctl promote, and then the first write, may take (0.26 s in the rehearsal).
PROMOTE_TIMEOUT_S = 60
# Per database, the outbox rows the promotion owes Kafka: re-sent from then on (JSON: "promotion", the one it
# belongs to, and "since", ISO moments by database).
RESEND_RECORD = postgres.PG_DIR / "resend-since.json"


class Refused(Exception):
    """The promotion may not run, or a step of it did not do what it should: the steps before it stay done,
    and running it again goes on from there."""


class NoOffsets(Refused):
    """A connector has no offsets, so nothing says from when its outbox is owed: --resend-since T says it."""


class ResyncOwed(Refused):
    """The promotion and its backup are done, the outbox re-sync is not: `just promote --resync` finishes it."""


@dataclass(frozen=True)
class PromotionId:
    """Which promotion a re-sync record belongs to: the cluster (a promoted standby keeps its system identifier),
    the standby's data directory, and the timeline it is promoted to (each promotion makes a new one)."""

    system_identifier: str
    data_directory: str
    timeline: int

    def __str__(self) -> str:
        return f"{self.data_directory} onto timeline {self.timeline} (system {self.system_identifier})"


def promotion_id(sql: Callable[[str], str]) -> PromotionId:
    """The promotion of the server ``sql`` runs on: a standby's to come, or a promoted one's (its timeline).
    A standby's timeline is its control file's (the last restartpoint's, or the minimum recovery point's if
    later): it replays no more once its primary is gone."""
    system, data, standby = sql(
        "SELECT system_identifier, current_setting('data_directory'), pg_is_in_recovery() FROM pg_control_system()"
    ).split("|")
    if standby == "t":
        last = "SELECT greatest(c.timeline_id, r.min_recovery_end_timeline) FROM pg_control_checkpoint() AS c, "
        timeline = int(sql(last + "pg_control_recovery() AS r")) + 1
    else:
        timeline = int(sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)
    return PromotionId(system, data, timeline)


@dataclass(frozen=True)
class Promotion:
    standby: Site  # the replica to promote
    old_primary_port: int  # refused while a server answers here
    pgbackrest_dir: Path  # pgBackRest's config, repository, logs (the stack's: beside the cluster)
    restart: Callable[[], None]  # stop the replica and start it again with replica.server_options
    # The stack's: the promoted replica becomes the stack's primary (recorded, on the primary's port); returns
    # the promotion as it goes on from there. None (a scratch pair): it stays where it is.
    take_over: Callable[[], Promotion] | None = None

    @property
    def conf(self) -> Path:
        return self.pgbackrest_dir / postgres.PGBACKREST_CONF.name

    def sql(self, statement: str) -> str:
        return postgres.psql_admin(statement, socket=self.standby.socket, port=self.standby.port).strip()

    def pgbackrest(self, *args: str) -> subprocess.CompletedProcess[str]:
        return backup_physical.pgbackrest(*args, conf=self.conf)


def answers(port: int) -> bool:
    """Whether a PostgreSQL answers on 127.0.0.1:``port`` (pg_isready: accepting, or starting up)."""
    argv = [str(postgres.BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(argv, check=False).returncode in (0, 1)


def refusals(p: Promotion) -> list[str]:
    """Why the promotion may not run now (empty: it may)."""
    found = []
    if answers(p.old_primary_port):
        found.append(
            f"the primary answers on port {p.old_primary_port}: promoting the replica would make two primaries. "
            "If it is to be replaced anyway, stop it first (`just stop postgres`) and never start it again"
        )
    if not answers(p.standby.port):
        found.append(f"the replica does not answer on port {p.standby.port} (`just start replica`)")
    return found


def promote(
    p: Promotion,
    *,
    backup: bool = True,
    say: Callable[[str], None] = print,
    outbox: Callable[[Callable[[str], None]], None] | None = None,
) -> None:
    """Steps 1-7 of the module's docstring; raises Refused before changing anything if it may not run.
    ``outbox``: the stack's re-sync, run once the promoted cluster is the stack's primary (ResyncOwed if it
    fails: the steps after it run first)."""
    problems = refusals(p)
    if problems:
        raise Refused("; ".join(problems))
    t0 = time.monotonic()

    def done(what: str) -> None:
        say(f"  {time.monotonic() - t0:6.1f}s  {what}")

    # The config first: the moment it is promoted, PostgreSQL hands archive-push the new timeline's history
    # file and the last segment of the old one, which need pg1-path to be this data directory.
    backup_physical.write_config(p.standby, p.pgbackrest_dir)
    done(f"pgBackRest's config names {p.standby.data} (port {p.standby.port})")
    standby = p.sql("SELECT pg_is_in_recovery()") == "t"
    if standby and p.sql("SHOW archive_mode") != "on":
        # Started with archive_mode=off (the replica's flags until session 32): promoted so, it would not
        # even queue its history file for archiving. Started again with the current flags, it replays on
        # from its own WAL (the primary is gone) and archives from the moment it is promoted.
        p.restart()
        done("restarted without archive_mode=off (a standby with it on archives nothing)")
    if standby:
        result = postgres.as_pg(
            [str(postgres.BIN / "pg_ctl"), "promote", "-w", "-t", str(PROMOTE_TIMEOUT_S), "-D", str(p.standby.data)]
        )
        if result.returncode != 0:
            raise Refused(f"pg_ctl promote failed: {result.stdout}{result.stderr}".strip())
        _wait_writable(p)
        done(f"promoted: timeline {_timeline(p)}, taking writes")
    else:
        done(f"promoted already (timeline {_timeline(p)}): completing it")
    for key, value in postgres.archive_settings(p.conf).items():
        p.sql(f"ALTER SYSTEM SET {key} = {value}")
    p.sql("SELECT pg_reload_conf()")
    if p.sql("SHOW archive_mode") != "on":  # promoted by hand while it ran with archive_mode=off
        p.restart()
        if p.sql("SHOW archive_mode") != "on":
            raise Refused("restarted, and archive_mode is still off: is it set on the server's command line?")
        done("restarted without archive_mode=off")
    _wait_for(lambda: p.sql("SHOW archive_command") == _archive_command(p), "the reload of archive_command")
    done("archiving through that config (ALTER SYSTEM)")
    if p.take_over is not None:
        p = p.take_over()
        done(f"the stack's primary from now on: {p.standby.data}, port {p.standby.port} ({postgres.PRIMARY_RECORD})")
    owed: BaseException | None = None
    if outbox is not None:
        try:
            outbox(done)
        except (Exception, SystemExit) as exc:  # Connect's, Kafka's, psql's: the backup is taken all the same
            owed = exc
            done(f"outbox re-sync stopped: {exc}")
    # A promotion only requests its end-of-recovery checkpoint: until one completes, pg_control still names the
    # old timeline and pgBackRest refuses a backup ("WAL timeline 2 does not match pg_control timeline 1"; the
    # fresh-clone CI met it on a slower run).
    p.sql("CHECKPOINT")
    done("checkpoint: pg_control on the new timeline")
    p.pgbackrest("stanza-create")
    done(f"stanza {postgres.STANZA}: this cluster's (same system identifier)")
    p.pgbackrest("check")
    done(f"pgbackrest check: WAL archived up to {_archived_up_to(p)}")
    if backup:
        p.pgbackrest("--type=full", "backup")
        newest = backup_physical.backups(p.conf)[-1]
        done(f"full backup {newest['label']} (WAL from {newest['archive']['start']})")
    else:
        done("no backup taken (--no-backup): take one with `just backup --full`")
    if owed is not None:
        raise ResyncOwed(f"the outbox re-sync: {owed}")


def _archive_command(p: Promotion) -> str:
    return postgres.archive_settings(p.conf)["archive_command"].strip("'")


def _wait_writable(p: Promotion) -> None:
    _wait_for(lambda: p.sql("SELECT pg_is_in_recovery()") == "f", "the end of recovery after pg_ctl promote")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PROMOTE_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise Refused(f"{what}: not within {PROMOTE_TIMEOUT_S} s")
        time.sleep(0.1)


def _timeline(p: Promotion) -> int:
    """The timeline it writes WAL on (pg_control's checkpoint still names the old one until the first
    checkpoint after the promotion)."""
    return int(p.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)


def _archived_up_to(p: Promotion) -> str:
    """The newest WAL segment in the archive (its first 8 hex digits are the timeline)."""
    stanzas = backup_physical.info(p.conf)
    return max((a.get("max") or "" for s in stanzas for a in s.get("archive", [])), default="") or "nothing"


def stack_promotion() -> Promotion:
    """The stack's read replica, its primary's port, and the pgBackRest folder beside the cluster."""
    from infra import stack  # the CLI's only: the stack's component table (up.lock around start/stop)

    def restart(name: str) -> Callable[[], None]:
        def again() -> None:
            stack.stop_component(name)
            stack.start_component(name)

        return again

    def take_over() -> Promotion:
        stack.stop_component(replica.NAME)  # a fast shutdown: its checkpoint is on the new timeline
        replica.take_over()
        site = backup_physical.primary_site()
        backup_physical.write_config(site, postgres.PGBACKREST_DIR)
        stack.start_component(postgres.NAME)
        return Promotion(site, pg_port(), postgres.PGBACKREST_DIR, restart(postgres.NAME))

    standby = Site(replica.DATA, replica_port(), replica.SOCKET_DIR)
    return Promotion(standby, pg_port(), postgres.PGBACKREST_DIR, restart(replica.NAME), take_over)


def taken_over_already() -> str | None:
    """Why `just promote` has nothing left to promote: since the recorded promotion the replica's directory
    holds no standby (the former primary, or nothing). None otherwise."""
    former_primary = replica.promoted() and not replica.running()  # a running promoted one: take it over
    if postgres.PRIMARY_RECORD.exists() and (not replica.initialised() or former_primary):
        return (
            f"{postgres.DATA} is the primary since a promotion, and {replica.DATA} holds no standby: nothing to "
            "promote. `just backup --full` if its backup is missing; `just rebuild-replica --yes` makes a replica"
        )
    return None


def connect_refusal() -> str | None:
    """Why the stack's connectors cannot be held and re-synced now (None: Kafka Connect answers, or there are
    no connectors)."""
    if not connectors.connector_files():
        return None
    try:
        connectors._request("GET", f"{connect_url()}/connectors")
    except OSError as exc:  # refused, timed out, an HTTP error
        return (
            f"Kafka Connect does not answer at {connect_url()} ({exc}): `just start connect` first. Each connector is "
            "stopped before the promotion and given a new slot after it; one that starts on its own afterwards "
            "makes its slot then and never publishes what it had not read"
        )
    return None


def record_refusal(promotion: PromotionId, since: dt.datetime | None) -> str | None:
    """Why the re-sync record there cannot be this promotion's (None: it is, there is none, or ``since`` is
    given, which replaces it). A record left by another promotion cut short holds that one's moments."""
    if since is not None or not RESEND_RECORD.exists():
        return None
    recorded, _ = read_record()
    if recorded == promotion:
        return None
    return (
        f"{RESEND_RECORD} is "
        + (f"the re-sync record of another promotion ({recorded})" if recorded else "a re-sync record of no promotion")
        + f", not of this one ({promotion}): its moments are not what this promotion's connectors missed. Was its "
        "re-sync finished (`just promote --resync` on its primary), remove it; else --resend-since T (replaces it)"
    )


def hold_connectors(
    say: Callable[[str], None], promotion: PromotionId, since: dt.datetime | None = None
) -> resync.Since:
    """Every connector stopped, and per database the moment from which its rows are re-sent: ``since`` if
    given, else the one recorded (RESEND_RECORD) by this promotion cut short (whatever the connectors did since;
    record_refusal has refused another's), else its connector's last read less the window, recorded. Refused
    (NoOffsets, the connectors resumed) for a connector without offsets, unless ``since`` is given."""
    refusal = record_refusal(promotion, since)
    if refusal:
        raise Refused(refusal)
    names = resync.connector_names()
    resync.stop_connectors(names, say)
    if since is None and RESEND_RECORD.exists():
        return read_record()[1]
    if since is not None:
        owed: resync.Since = dict.fromkeys(resync.connector_databases().values(), since)
    else:
        read = resync.since_last_read(names)
        unread = sorted(db for db, moment in read.items() if moment is None)
        if unread:
            resync.resume_connectors(names)
            raise NoOffsets(
                f"no offsets in Kafka Connect for the connector of {', '.join(unread)}, so nothing says what it read "
                "(one that never committed a read, or whose offsets were lost): re-sending its whole outbox (kept "
                "a year) would queue every consumer behind it. --resend-since T, T no later than when it may have "
                "stopped reading (an early T re-sends all since, in chunks); the connectors are resumed"
            )
        owed = {db: moment for db, moment in read.items() if moment is not None}
    RESEND_RECORD.write_text(
        json.dumps(
            {"promotion": dataclasses.asdict(promotion), "since": {db: m.isoformat() for db, m in owed.items()}},
            indent=1,
        )
        + "\n"
    )
    wanted = [f"{db} since {m.isoformat(timespec='seconds')}" for db, m in owed.items()]
    say(f"connectors held for the promotion of {promotion}; outbox rows to re-send once promoted: {', '.join(wanted)}")
    return owed


def read_record() -> tuple[PromotionId | None, resync.Since]:
    """RESEND_RECORD: the promotion it belongs to (None: a record written before it named one) and its moments."""
    recorded = json.loads(RESEND_RECORD.read_text())
    if "promotion" not in recorded:
        return None, {}
    since = {db: dt.datetime.fromisoformat(m) for db, m in recorded["since"].items()}
    return PromotionId(**recorded["promotion"]), since


def resync_outbox(since: resync.Since, say: Callable[[str], None]) -> None:
    """The re-sync (infra/resync.py), then the record of what was owed removed."""
    resync.resync(resync.connector_names(), since, say)
    RESEND_RECORD.unlink(missing_ok=True)


def primary_refusal() -> str | None:
    """Why the re-sync cannot run on the stack's primary now (None: it answers on its port and takes writes)."""
    try:
        writable = postgres.psql_admin("SELECT pg_is_in_recovery()").strip() == "f"
    except RuntimeError as exc:  # psql's: it does not answer
        return f"the primary does not answer on port {pg_port()} ({exc}): `just promote --yes` first"
    return None if writable else f"the server on port {pg_port()} is a standby: `just promote --yes` first"


def primary_record_refusal() -> str | None:
    """Why the re-sync record is not the primary's on its port (None: it is the promotion's, or the primary that
    promotion left is back: its connectors were held, and its own slots still hold what they had not read)."""
    recorded, _ = read_record()
    primary = promotion_id(lambda sql: postgres.psql_admin(sql).strip())
    if recorded is not None and (
        recorded == primary
        or (recorded.system_identifier, recorded.timeline - 1) == (primary.system_identifier, primary.timeline)
    ):
        return None
    return (
        f"{RESEND_RECORD} belongs to "
        + (f"the promotion of {recorded}" if recorded else "no promotion")
        + f", not to the primary on port {pg_port()} ({primary.data_directory}, timeline {primary.timeline}): "
        "--resend-since T, or remove the record if its re-sync was done"
    )


def finish_resync(since: dt.datetime | None) -> int:
    """`just promote --resync`: a re-sync cut short (or Connect down during the promotion) done now."""
    if since is not None:
        owed: resync.Since = dict.fromkeys(resync.connector_databases().values(), since)
    elif RESEND_RECORD.exists():
        owed = read_record()[1]
    else:
        print(
            f"refusing: no record of what the connectors had read ({RESEND_RECORD}): --resend-since T, T no later "
            "than the moment the old primary was lost less the time its connectors lagged",
            file=sys.stderr,
        )
        return 2
    problems = [problem for problem in (primary_refusal(), connect_refusal()) if problem]
    if not problems and since is None:
        problems += filter(None, [primary_record_refusal()])
    for problem in problems:
        print(f"refusing: {problem}", file=sys.stderr)
    if problems:
        return 2
    resync_outbox(owed, lambda line: print(f"  {line}", flush=True))
    print("done: every connector streams from a new slot, and what it may have missed is published again")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yes", action="store_true", help="promote (without it: only say whether it may)")
    parser.add_argument("--no-backup", action="store_true", help="skip step 7 (take it later: just backup --full)")
    parser.add_argument(
        "--resync", action="store_true", help="only the outbox re-sync, after a promotion whose re-sync did not finish"
    )
    parser.add_argument(
        "--resend-since", default=None, help="re-send outbox rows from here (default: each connector's last read)"
    )
    args = parser.parse_args(argv)
    since = resync.parse_time(args.resend_since, "--resend-since") if args.resend_since else None
    if args.resync:
        return finish_resync(since)
    p = stack_promotion()
    done_already = taken_over_already()
    problems = [done_already] if done_already else [*refusals(p), *filter(None, [connect_refusal()])]
    if not problems and connectors.connector_files():
        problems += filter(None, [record_refusal(promotion_id(p.sql), since)])
    if not args.yes or problems:
        for problem in problems:
            print(f"refusing: {problem}", file=sys.stderr)
        if not problems:
            print(f"may promote the replica ({p.standby.data}, port {p.standby.port}); `just promote --yes` does it")
        return 2 if problems else 0
    print(f"promoting the replica ({p.standby.data}, port {p.standby.port})", flush=True)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        # A stack without connectors (none in connectors/) has nothing to hold or re-sync.
        outbox = (
            functools.partial(resync_outbox, hold_connectors(say, promotion_id(p.sql), since))
            if connectors.connector_files()
            else None
        )
        promote(p, backup=not args.no_backup, say=say, outbox=outbox)
    except NoOffsets as exc:  # nothing changed: the connectors are resumed
        print(f"refusing: {exc}", file=sys.stderr)
        return 2
    except ResyncOwed as exc:
        print(f"stopped: {exc}\nthe promotion is done; `just promote --resync` finishes the re-sync", file=sys.stderr)
        return 1
    except (Refused, proc.StartError, RuntimeError, SystemExit, OSError) as exc:  # psql's, stack's, Connect's
        after = "`just start postgres`, then `just backup --full`" if taken_over_already() else "`just promote --yes`"
        if taken_over_already() and RESEND_RECORD.exists():
            after += " and `just promote --resync`"
        elif RESEND_RECORD.exists():  # held, not promoted: should the old primary come back instead, this resumes them
            after += " (the connectors stay stopped until then; `just promote --resync` if the old primary is back)"
        print(f"stopped: {exc}\nwhat was done stays done; {after} goes on from there", file=sys.stderr)
        return 1
    print(
        f"done: the primary is {postgres.DATA} on 127.0.0.1:{pg_port()}, where every process connects, and every "
        "connector streams from a new slot. Left: `just rebuild-replica --yes` (docs/operations.md, Read replica)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
