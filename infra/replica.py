"""The streaming read replica: a hot standby of the whole cluster on its own data dir and port (5433).

Made once with ``pg_basebackup -R`` (which writes primary_conninfo and standby.signal) over the private
socket, with a physical replication slot so the primary keeps the WAL the replica has not replayed yet.
`just up` starts it after the primary; `just stop replica` / `just start replica` control it; after a
point-in-time recovery (a new timeline) ``rebuild`` makes it again from the recovered primary.

Its data directory is whichever of the two (infra/postgres.py, DIRECTORIES) is not the primary: after
`just promote` that is the old primary's, which is no standby and is not started as one (NotAStandby) until
`just rebuild-replica --yes` makes it a copy of the new primary.

    python -m infra.replica rebuild [--yes]    # `just rebuild-replica`: say what it would do / do it
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from apps.common.topology import pg_port, replica_port
from infra import postgres, proc

NAME = "replica"
DATA = postgres.PG_DIR / postgres.standby_name()
SOCKET_DIR = postgres.PG_DIR / "replica-run"
SLOT = "read_replica"


class NotAStandby(proc.StartError):
    """The standby's directory holds a cluster that is no standby: the primary until a promotion."""


def initialised() -> bool:
    return (DATA / "PG_VERSION").exists()


def promoted(data: Path | None = None) -> bool:
    """Whether this cluster is no standby (promoted, or the primary it was copied from): pg_basebackup -R left
    a standby.signal that promotion removes."""
    data = data or DATA
    return (data / "PG_VERSION").exists() and not (data / "standby.signal").exists()


def take_over() -> None:
    """The promoted standby's directory becomes the primary's, the old primary's the standby's: recorded
    (postgres.record_primary), and this process's paths follow. The caller has stopped the promoted server;
    `postgres.start` then starts it on the primary's port and socket (its postgresql.conf, copied from the
    primary, names them: the replica's own are on its command line)."""
    global DATA
    if not promoted():
        raise proc.StartError(f"replica: {DATA} is not promoted; nothing to take over")
    postgres.record_primary(DATA)
    postgres.DATA, DATA = DATA, postgres.DATA


def server_options() -> list[str]:
    """The replica's own settings on its command line (they override the primary's copied config).

    archive_mode stays as copied (on): a standby archives nothing with it (only `always` would), and a
    promoted one archives from its first moment, the new timeline's history file included. Until session
    32 it ran with archive_mode=off here, which left a promoted replica archiving nothing until restarted
    (session 31's rehearsal; infra/promote.py restarts such a one before promoting it)."""
    # Feedback keeps the primary's vacuum from removing rows a long report on the replica still reads.
    return ["-c", "hot_standby_feedback=on"]


def ready() -> bool:
    argv = [str(postgres.BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(replica_port())]
    return subprocess.run(argv, check=False).returncode == 0


def running() -> bool:
    if not initialised():
        return False
    return postgres.as_pg([str(postgres.BIN / "pg_ctl"), "status", "-D", str(DATA)]).returncode == 0


def allow_replication() -> None:
    """Clusters made before the replica existed lack its pg_hba line; add it and reload."""
    hba = postgres.DATA / "pg_hba.conf"
    if postgres.REPLICATION_HBA.strip() not in hba.read_text():
        with hba.open("a") as handle:
            handle.write(postgres.REPLICATION_HBA)
        postgres.psql_admin("SELECT pg_reload_conf()")


def drop_slot() -> None:
    postgres.psql_admin(
        f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
    )


def create() -> None:
    """Copy the running primary with pg_basebackup -R, creating the slot the replica streams from."""
    allow_replication()
    drop_slot()
    shutil.rmtree(DATA, ignore_errors=True)
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    postgres.chown_for_pg(SOCKET_DIR)
    argv = [str(postgres.BIN / "pg_basebackup"), "-D", str(DATA), "-h", str(postgres.SOCKET_DIR)]
    argv += ["-p", str(pg_port()), "-U", "postgres", "-R", "-X", "stream", "-C", "-S", SLOT, "--checkpoint=fast"]
    result = postgres.as_pg(argv)
    if result.returncode != 0:
        raise proc.StartError(f"replica: pg_basebackup failed:\n{result.stdout}\n{result.stderr}")


def start() -> None:
    if not initialised():
        create()
    elif promoted() and not running():
        # Started with the replica's flags it would be a second primary on the replica's port.
        raise NotAStandby(
            f"replica: {DATA} is no standby (the primary before `just promote` made {postgres.DATA} the primary); "
            "`just rebuild-replica --yes` makes it a copy of the new primary"
        )
    pid = None
    if not running():
        argv = [str(postgres.BIN / "postgres"), "-D", str(DATA), "-p", str(replica_port()), "-k", str(SOCKET_DIR)]
        argv += server_options()
        pid = proc.spawn(NAME, argv, user=postgres.os_user() if os.geteuid() == 0 else None)
    proc.wait_until(NAME, ready, timeout=60, pid=pid)
    if postgres.drop_cdc_physical_replication(DATA):  # a copy of a primary from before session 29
        postgres.as_pg([str(postgres.BIN / "pg_ctl"), "reload", "-D", str(DATA)])


def stop() -> bool:
    if not running():
        proc.stop(NAME, timeout=5)
        return False
    postgres.as_pg([str(postgres.BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(DATA)])
    proc.stop(NAME, timeout=5)
    return True


def rebuild() -> None:
    """A fresh copy of the primary: after a PITR the replica's history is no longer the primary's, and after a
    promotion the old primary's directory is no standby."""
    stop()
    shutil.rmtree(DATA, ignore_errors=True)
    start()


def rebuild_refusals() -> list[str]:
    """Why `just rebuild-replica` may not run now (empty: it may)."""
    if not postgres.ready():
        return [f"the primary ({postgres.DATA}) does not answer on port {pg_port()}: `just start postgres` first"]
    answer = postgres.psql_admin("SELECT pg_is_in_recovery(), current_setting('data_directory')")
    in_recovery, serving = answer.strip().split("|", 1)
    if in_recovery != "f":
        return [f"the server on port {pg_port()} is a standby, not a primary: nothing to copy from"]
    # The standby's directory is the one the record does not name: were the record ever lost or wrong, it could
    # be the running primary's own, and the rebuild deletes it.
    if Path(serving).resolve() == DATA.resolve():
        return [f"{DATA} is the running primary's own directory (port {pg_port()}): check {postgres.PRIMARY_RECORD}"]
    return []


def what_rebuild_replaces() -> str:
    if not initialised():
        return f"{DATA} is empty: a copy of the primary is made there"
    if promoted():
        return (
            f"{DATA} holds a former primary (no standby.signal): it is deleted, and with it any commit the new "
            "primary never received (copy the directory first to keep them)"
        )
    return f"{DATA} holds a standby: it is deleted and copied again"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["rebuild"])
    parser.add_argument("--yes", action="store_true", help="do it (without it: only say what it would do)")
    args = parser.parse_args(argv)
    problems = rebuild_refusals()
    for problem in problems:
        print(f"refusing: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"replica: {what_rebuild_replaces()}; then started on port {replica_port()}", flush=True)
    if not args.yes:
        print("`just rebuild-replica --yes` does it")
        return 0
    from infra import stack  # the CLI's only: up.lock, as `just start` takes it

    t0 = time.monotonic()
    with stack.exclusive():  # no `just start replica` or `up` meanwhile on a half-copied directory
        rebuild()
    stack.hold(NAME, False)
    print(f"replica: a standby of {postgres.DATA} again, streaming ({time.monotonic() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def lag() -> dict[str, str]:
    """pg_stat_replication on the primary for the replica's WAL sender: state and replay lag."""
    row = postgres.psql_admin(
        "SELECT r.state, coalesce(r.replay_lag::text, '0'), pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn) "
        f"FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = '{SLOT}'"
    ).strip()
    if not row:
        return {"state": "not streaming"}
    state, replay_lag, behind = row.split("|")
    return {"state": state, "replay_lag": replay_lag, "replay_bytes_behind": behind}
