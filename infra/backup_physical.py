"""Physical backups and WAL archiving on pgBackRest: the stanza, full and incremental backups, the schedule.

`just up` runs ``ensure``: the config beside the cluster, archiving on (one PostgreSQL restart the first
time on a cluster made before archiving existed), the stanza, and a first full backup in the background if
there is none, so point-in-time recovery works from the first minute. ``just backup --full|--incr`` takes one more;
``just pitr --to TIME`` (infra/pitr.py) restores from them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from apps.common.topology import pg_port
from infra import postgres, proc

TEMPLATE = Path(__file__).resolve().parent / "pgbackrest" / "pgbackrest.conf.template"
CRON_TEMPLATE = Path(__file__).resolve().parent / "pgbackrest" / "commerce-backup.cron"
REPO_DIR = postgres.PGBACKREST_DIR / "repo"
FIRST_BACKUP = "first-backup"  # the process name (pid file, log) of the first full backup


def config_text() -> str:
    values = {
        "@REPO@": str(REPO_DIR),
        "@LOG@": str(postgres.PGBACKREST_DIR / "log"),
        "@LOCK@": str(postgres.PGBACKREST_DIR / "lock"),
        "@SPOOL@": str(postgres.PGBACKREST_DIR / "spool"),
        "@STANZA@": postgres.STANZA,
        "@DATA@": str(postgres.DATA),
        "@PORT@": str(pg_port()),
        "@SOCKET@": str(postgres.SOCKET_DIR),
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def write_config() -> None:
    for folder in (postgres.PGBACKREST_DIR, REPO_DIR, *(postgres.PGBACKREST_DIR / n for n in ("log", "lock", "spool"))):
        folder.mkdir(parents=True, exist_ok=True)
        postgres.chown_for_pg(folder)
    postgres.PGBACKREST_CONF.write_text(config_text())
    postgres.chown_for_pg(postgres.PGBACKREST_CONF)


def pgbackrest(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run pgbackrest as the cluster's OS user (it refuses root, and its files must stay that user's)."""
    argv = ["pgbackrest", f"--config={postgres.PGBACKREST_CONF}", f"--stanza={postgres.STANZA}", *args]
    result = postgres.as_pg(argv)
    if check and result.returncode != 0:
        raise proc.StartError(f"pgbackrest {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def archiving_on() -> bool:
    settings = dict(
        line.split("|", 1)
        for line in postgres.psql_admin(
            "SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command')"
        ).splitlines()
    )
    wanted = postgres.ARCHIVE_SETTINGS["archive_command"].strip("'")
    return settings.get("archive_mode") == "on" and settings.get("archive_command") == wanted


def enable_archiving() -> None:
    """Archiving on a running cluster made before it existed: ALTER SYSTEM, then the one restart it needs."""
    for key, value in postgres.ARCHIVE_SETTINGS.items():
        postgres.psql_admin(f"ALTER SYSTEM SET {key} = {value}")
    print("postgres: WAL archiving turned on; restarting PostgreSQL once", flush=True)
    postgres.stop()
    postgres.start()


def info() -> list[dict[str, Any]]:
    result = pgbackrest("--output=json", "info", check=False)
    try:
        stanzas: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return stanzas


def backups() -> list[dict[str, Any]]:
    """Every backup in the repository, oldest first (pgBackRest's JSON: label, type, timestamp start/stop)."""
    return [b for stanza in info() for b in stanza.get("backup", [])]


def backup(kind: str) -> dict[str, Any]:
    """Take a full, differential or incremental backup; returns its entry from `pgbackrest info`."""
    pgbackrest(f"--type={kind}", "backup")
    return backups()[-1]


def ensure() -> None:
    """Config, archiving, stanza, and a first full backup: idempotent, run by `just up` after PostgreSQL."""
    write_config()
    if not archiving_on():
        enable_archiving()
    pgbackrest("stanza-create")
    if not backups() and not proc.running(FIRST_BACKUP):
        # In the background: a fresh cluster's full backup takes ~8 s of a cold `just up` for nothing
        # that needs it yet (only `just pitr` does, and it says so if the backup is still running).
        argv = ["pgbackrest", f"--config={postgres.PGBACKREST_CONF}", f"--stanza={postgres.STANZA}"]
        proc.spawn(
            FIRST_BACKUP, [*argv, "--type=full", "backup"], user=postgres.os_user() if os.geteuid() == 0 else None
        )


def schedule() -> str:
    """The cron file with this stack's config path, for /etc/cron.d."""
    return CRON_TEMPLATE.read_text().replace("@CONF@", str(postgres.PGBACKREST_CONF))
