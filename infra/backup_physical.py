"""Physical backups and WAL archiving on pgBackRest: the stanza, full and incremental backups, the schedule.

`just up` runs ``ensure``: the config beside the cluster, archiving on (one PostgreSQL restart the first
time on a cluster made before archiving existed), the stanza, and a first full backup in the background if
there is none, so point-in-time recovery works from the first minute. ``just backup --full|--incr`` takes one more;
``just pitr --to TIME`` (infra/pitr.py) restores from them. ``expire`` removes what retention allows, and
``state`` is what `just status`, `just backup --info` and the stack exporter's backup metrics read.

The WAL archive only shrinks when pgBackRest expires a full backup: with time-based retention (30 days), a
full backup and the WAL after it stay until a newer full backup is 30 days old. On the dev stack, with one
full backup and ~1.5 GB of WAL an hour under benchmarks, that is the disk (session 29: 16 GB and growing);
``expire(keep_full=N)`` keeps only the newest N full backups and the WAL they need, whatever their age.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.common.topology import pg_port
from infra import postgres, proc

TEMPLATE = Path(__file__).resolve().parent / "pgbackrest" / "pgbackrest.conf.template"
CRON_TEMPLATE = Path(__file__).resolve().parent / "pgbackrest" / "commerce-backup.cron"
REPO_DIR = postgres.PGBACKREST_DIR / "repo"
FIRST_BACKUP = "first-backup"  # the process name (pid file, log) of the first full backup
# The seed's schedule (commerce-backup.cron) takes a backup every 4 hours: a day without one is late.
LATE_AFTER_S = 26 * 3600


@dataclass(frozen=True)
class Site:
    """A primary as pgBackRest's pg1-* options name it: data directory, port, socket folder."""

    data: Path
    port: int
    socket: Path


def primary_site() -> Site:
    """The stack's primary: its recorded data directory (postgres.PRIMARY_RECORD: the promoted replica's after
    `just promote`) on the primary's port and socket. A former primary's directory is then not pg1-path, so a
    server started on it by hand cannot archive into the repository (archive-push resolves %p against
    pg1-path, and refuses)."""
    return Site(postgres.DATA, pg_port(), postgres.SOCKET_DIR)


def config_text(site: Site | None = None, folder: Path = postgres.PGBACKREST_DIR) -> str:
    """The config for ``site`` (the stack's primary) with repository, logs, locks and spool in ``folder``."""
    site = site or primary_site()
    values = {
        "@REPO@": str(folder / "repo"),
        "@LOG@": str(folder / "log"),
        "@LOCK@": str(folder / "lock"),
        "@SPOOL@": str(folder / "spool"),
        "@STANZA@": postgres.STANZA,
        "@DATA@": str(site.data),
        "@PORT@": str(site.port),
        "@SOCKET@": str(site.socket),
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def write_config(site: Site | None = None, folder: Path = postgres.PGBACKREST_DIR) -> Path:
    """Write ``folder``/pgbackrest.conf for ``site`` (the stack's primary), and the folders it names."""
    for sub in (folder, *(folder / n for n in ("repo", "log", "lock", "spool"))):
        sub.mkdir(parents=True, exist_ok=True)
        postgres.chown_for_pg(sub)
    conf = folder / postgres.PGBACKREST_CONF.name
    conf.write_text(config_text(site, folder))
    postgres.chown_for_pg(conf)
    return conf


# pgBackRest's exit code when another of its processes holds the stanza's lock (LockAcquireError). Seen with two
# full backups of one scratch stanza at once, and an expire during an incremental: exit 50, "ERROR: [050]: unable
# to acquire lock on file '.../lock/commerce-backup.lock': Resource temporarily unavailable / HINT: is another
# pgBackRest process running?" (/tmp/s34/D/lock_repro.py).
LOCK_HELD_EXIT = 50


class LockHeld(proc.StartError):
    """pgBackRest refused: another of its processes (a backup, an expire, by hand or scheduled) holds the lock."""


def pgbackrest(
    *args: str, check: bool = True, conf: Path = postgres.PGBACKREST_CONF
) -> subprocess.CompletedProcess[str]:
    """Run pgbackrest as the cluster's OS user (it refuses root, and its files must stay that user's)."""
    argv = ["pgbackrest", f"--config={conf}", f"--stanza={postgres.STANZA}", *args]
    result = postgres.as_pg(argv)
    if check and result.returncode != 0:
        failed = LockHeld if result.returncode == LOCK_HELD_EXIT else proc.StartError
        raise failed(f"pgbackrest {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
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


def info(conf: Path = postgres.PGBACKREST_CONF) -> list[dict[str, Any]]:
    result = pgbackrest("--output=json", "info", check=False, conf=conf)
    try:
        stanzas: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return stanzas


def backups(conf: Path = postgres.PGBACKREST_CONF) -> list[dict[str, Any]]:
    """Every backup in the repository, oldest first (pgBackRest's JSON: label, type, timestamp start/stop)."""
    return [b for stanza in info(conf) for b in stanza.get("backup", [])]


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


@dataclass(frozen=True)
class RepoState:
    """What the repository holds, for status lines, metrics and alerts."""

    backups: int
    last_full: float | None  # when the newest full backup ended (epoch seconds)
    last_backup: float | None  # when the newest backup of any type ended
    archive_bytes: int  # the whole WAL archive on disk
    to_replay_bytes: int  # archived WAL from the newest backup's start on: what a recovery to now replays

    def late(self, now: float | None = None) -> bool:
        """No backup ended in the last 26 hours (BackupNotRecent's threshold)."""
        now = time.time() if now is None else now
        return self.last_backup is None or now - self.last_backup > LATE_AFTER_S

    def summary(self, now: float | None = None) -> str:
        now = time.time() if now is None else now

        def age(at: float | None) -> str:
            return "none" if at is None else f"{(now - at) / 3600:.1f} h ago"

        return (
            f"{self.backups} backups, last full {age(self.last_full)}, last backup {age(self.last_backup)}; "
            f"WAL archive {size(self.archive_bytes)} on disk (compressed), {size(self.to_replay_bytes)} of it "
            "from the newest backup on (a recovery to now replays that)"
        )


def size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if abs(count) >= 2**30 else f"{count / 2**20:.1f} MiB"


def state(stanzas: list[dict[str, Any]] | None = None, repo: Path = REPO_DIR) -> RepoState:
    """The repository's backups and WAL archive (reads `pgbackrest info` and the archive's file sizes)."""
    found = [b for stanza in (info() if stanzas is None else stanzas) for b in stanza.get("backup", [])]
    fulls = [b for b in found if b.get("type") == "full"]
    newest = found[-1] if found else None
    start = str(newest["archive"]["start"]) if newest is not None else None
    archive_bytes = to_replay = 0
    for name, size in _archived_segments(repo / "archive" / postgres.STANZA):
        archive_bytes += size
        if start is None or name >= start:  # timeline first, then position: names sort in WAL order
            to_replay += size
    return RepoState(
        backups=len(found),
        last_full=float(fulls[-1]["timestamp"]["stop"]) if fulls else None,
        last_backup=float(newest["timestamp"]["stop"]) if newest is not None else None,
        archive_bytes=archive_bytes,
        to_replay_bytes=to_replay,
    )


def _archived_segments(archive: Path) -> list[tuple[str, int]]:
    """(segment name, bytes) of every archived WAL file: <archive>/<db id>/<16 hex>/<24 hex>-<sha1>.<ext>."""
    found = []
    for database in _entries(archive):
        for folder in _entries(database):
            for entry in _entries(folder):
                if entry.is_file(follow_symlinks=False):
                    found.append((entry.name[:24], entry.stat(follow_symlinks=False).st_size))
    return found


def _entries(folder: Path | os.DirEntry[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False) or e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def expire(keep_full: int | None = None, *, dry_run: bool = False) -> str:
    """pgBackRest's expire: with ``keep_full``, only the newest ``keep_full`` full backups (and their
    incrementals and the WAL from the oldest of them on) are kept, whatever the configured retention says;
    without it, the configured retention. Returns what pgBackRest said it removed."""
    args = ["--log-level-console=info"]
    if keep_full is not None:
        if keep_full < 1:
            raise ValueError("keep at least one full backup (--keep-full 1): without one there is no recovery")
        args += ["--repo1-retention-full-type=count", f"--repo1-retention-full={keep_full}"]
    if dry_run:
        args.append("--dry-run")
    result = pgbackrest(*args, "expire")
    said = [line.split("INFO: ", 1)[1] for line in result.stdout.splitlines() if "INFO: " in line]
    return "\n".join(line for line in said if "command begin" not in line and "command end" not in line)
