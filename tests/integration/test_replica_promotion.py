"""`just promote` on a scratch pair: the promoted replica archives its WAL and has a backup of its own.

Session 31's rehearsal found that PostgreSQL's promotion alone leaves a primary that archives nothing
(the replica runs with archive_mode=off on its command line) and that pgBackRest cannot back up (its
config names the old primary's data directory). infra/promote.py completes it; this runs its steps on a
pair of our own, made as the stack makes its own (infra/postgres.py's settings, pgBackRest's config from
the same template, pg_basebackup -R with a slot, the replica's command-line options): own ports, own
folders under the temporary directory (TMPDIR), own repository. The shared stack is not touched.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import backup_physical, postgres, promote, replica
from infra.backup_physical import Site
from tests.support.pg_fault import free_port

pytestmark = pytest.mark.slow


def _pg(*argv: str) -> str:
    result = postgres.as_pg([*argv])
    assert result.returncode == 0, f"{argv[0]} failed: {result.stdout}{result.stderr}"
    return result.stdout


def _folder(path: Path) -> Path:
    path.mkdir(mode=0o700)
    postgres.chown_for_pg(path)
    return path


@dataclass(frozen=True)
class Server:
    site: Site
    log: Path

    def start(self, *options: str) -> None:
        flags = " ".join(["-p", str(self.site.port), "-k", str(self.site.socket), *options])
        _pg(str(postgres.BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.site.data), "-l", str(self.log),
            "-o", flags)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        postgres.as_pg([str(postgres.BIN / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.site.data)])

    def sql(self, statement: str) -> str:
        return postgres.psql_admin(statement, socket=self.site.socket, port=self.site.port).strip()


@contextlib.contextmanager
def scratch_pair(standby_options: list[str]) -> Iterator[tuple[Server, Server, Path]]:
    """A primary archiving into its own pgBackRest repository, with one full backup, and a streaming
    replica of it started with ``standby_options``; both stopped and their folders removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="commerce-promote-"))
    postgres.chown_for_pg(root)  # initdb and pg_basebackup make their folders in it as the postgres user
    primary = Server(Site(root / "primary", free_port(), _folder(root / "primary-run")), root / "primary.log")
    standby = Server(Site(root / "standby", free_port(), _folder(root / "standby-run")), root / "standby.log")
    folder = _folder(root / "pgbackrest")
    for server in (primary, standby):
        server.log.touch()
        postgres.chown_for_pg(server.log)
    try:
        _pg(str(postgres.BIN / "initdb"), "-D", str(primary.site.data), "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--auth-local=peer")  # fmt: skip
        conf = backup_physical.write_config(primary.site, folder)
        settings = {**postgres.SETTINGS, "shared_buffers": "32MB", "max_connections": "20"}
        lines = [f"{key} = {value}" for key, value in {**settings, **postgres.archive_settings(conf)}.items()]
        with (primary.site.data / "postgresql.conf").open("a") as handle:
            handle.write("\n".join(lines) + "\n")
        (primary.site.data / "pg_hba.conf").write_text("local all postgres peer\n" + postgres.REPLICATION_HBA)
        primary.start()
        backup_physical.pgbackrest("stanza-create", conf=conf)
        backup_physical.pgbackrest("--type=full", "backup", conf=conf)
        _pg(str(postgres.BIN / "pg_basebackup"), "-D", str(standby.site.data), "-h", str(primary.site.socket),
            "-p", str(primary.site.port), "-U", "postgres", "-R", "-X", "stream", "-C", "-S", replica.SLOT,
            "--checkpoint=fast")  # fmt: skip
        standby.start(*standby_options)
        yield primary, standby, folder
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# The replica's flags until session 32 (archive_mode=off: promote restarts it first), and today's.
LEGACY = ["-c", "archive_mode=off", "-c", "hot_standby_feedback=on"]


@pytest.mark.parametrize(
    ("options", "restarts_needed"), [(LEGACY, 1), (replica.server_options(), 0)], ids=["legacy", "now"]
)
def test_a_promoted_replica_archives_its_wal_and_is_backed_up(options: list[str], restarts_needed: int) -> None:
    with scratch_pair(options) as (primary, standby, folder):
        primary.sql("CREATE TABLE before_failover (id int); INSERT INTO before_failover VALUES (1)")
        lsn = primary.sql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + 30
        while standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") != "t":
            assert time.monotonic() < deadline, "the replica did not replay the primary's last write"
            time.sleep(0.1)
        assert standby.sql("SHOW archive_mode") == ("off" if options == LEGACY else "on")
        assert not replica.promoted(standby.site.data)

        restarts: list[float] = []

        def restart() -> None:
            restarts.append(time.monotonic())
            standby.stop()
            standby.start(*replica.server_options())

        promotion = promote.Promotion(standby.site, primary.site.port, folder, restart)
        # The old primary still answers: refused, nothing changed.
        with pytest.raises(promote.Refused, match="two primaries"):
            promote.promote(promotion, say=lambda _: None)
        assert standby.sql("SELECT pg_is_in_recovery()") == "t"

        primary.stop("immediate")  # the primary is lost
        promoted_at = time.time()
        said: list[str] = []
        promote.promote(promotion, say=said.append)

        assert standby.sql("SELECT pg_is_in_recovery()") == "f", said
        assert replica.promoted(standby.site.data)
        assert standby.sql("SELECT count(*) FROM before_failover") == "1"
        standby.sql("INSERT INTO before_failover VALUES (2)")
        assert standby.sql("SHOW archive_mode") == "on"
        assert len(restarts) == restarts_needed, said  # only to drop the legacy archive_mode=off
        conf = promotion.conf
        [stanza] = backup_physical.info(conf)
        [archive] = stanza["archive"]
        assert archive["max"].startswith("00000002"), archive  # a segment of the new timeline, archived
        archived = {p.name for p in (folder / "repo" / "archive" / postgres.STANZA).rglob("*") if p.is_file()}
        assert "00000002.history" in archived
        assert any(name.startswith("00000002") and ".partial" not in name for name in archived), sorted(archived)
        backups = backup_physical.backups(conf)
        assert len(backups) == 2
        newest = backups[-1]
        assert newest["type"] == "full" and newest["timestamp"]["start"] >= int(promoted_at), newest
        assert newest["archive"]["start"].startswith("00000002"), newest
        # pgBackRest reads the config as the stack writes it for a promoted replica, and it answers.
        assert f"pg1-path={standby.site.data}" in conf.read_text()
        backup_physical.pgbackrest("check", conf=conf)

        # Run again (an operator unsure it finished): nothing to promote, no restart, all still holds.
        first = len(said)
        promote.promote(promotion, backup=False, say=said.append)
        assert len(restarts) == restarts_needed and "promoted already" in said[first + 1], said
