"""The streaming read replica: a hot standby of the whole cluster on its own data dir and port (5433).

Made once with ``pg_basebackup -R`` (which writes primary_conninfo and standby.signal) over the private
socket, with a physical replication slot so the primary keeps the WAL the replica has not replayed yet.
`just up` starts it after the primary; `just stop replica` / `just start replica` control it; after a
point-in-time recovery (a new timeline) ``rebuild`` makes it again from the recovered primary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from apps.common.topology import pg_port, replica_port
from infra import postgres, proc

NAME = "replica"
DATA = postgres.PG_DIR / "replica"
SOCKET_DIR = postgres.PG_DIR / "replica-run"
SLOT = "read_replica"


def initialised() -> bool:
    return (DATA / "PG_VERSION").exists()


def promoted(data: Path | None = None) -> bool:
    """Whether this copy was promoted (`just promote`, or pg_ctl promote by hand): pg_basebackup -R left a
    standby.signal that promotion removes. A promoted replica is the primary from then on: what pgBackRest
    backs up (infra/backup_physical.primary_site)."""
    data = data or DATA
    return (data / "PG_VERSION").exists() and not (data / "standby.signal").exists()


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
    """A fresh copy of the primary: after a PITR the replica's history is no longer the primary's."""
    stop()
    shutil.rmtree(DATA, ignore_errors=True)
    start()


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
