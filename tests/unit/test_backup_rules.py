"""Pure parts of backups, PITR and read routing: file names, times, LSNs, the pgBackRest config and schedule."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from apps.common.read_routing import lsn_to_int, replica_url
from apps.common.topology import BY_NAME
from infra import backup, backup_physical, pitr, postgres, proc, resync, stack


def test_dump_names_are_the_seeds_in_utc() -> None:
    at = dt.datetime(2026, 11, 26, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert backup.dump_name(BY_NAME["order"], at) == "20261126_020506_order_db.backup"


def test_pitr_times_without_a_zone_are_utc_and_garbage_is_refused() -> None:
    assert resync.parse_time("2026-11-26 03:15:00") == dt.datetime(2026, 11, 26, 3, 15, tzinfo=dt.UTC)
    assert resync.parse_time("2026-11-26T03:15:00+01:00").utcoffset() == dt.timedelta(hours=1)
    with pytest.raises(SystemExit, match="--to"):
        resync.parse_time("yesterday")


def test_lsns_compare_as_numbers() -> None:
    assert lsn_to_int("0/10") == 16
    assert lsn_to_int("1/0") == 1 << 32
    assert lsn_to_int("0/FFFFFFFF") < lsn_to_int("1/0")


def test_the_replica_url_is_the_services_own_on_the_replica_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_REPLICA_PORT", "6543")
    url = replica_url(BY_NAME["catalog"])
    assert url.startswith("postgresql+asyncpg://catalog_svc:") and url.endswith("@127.0.0.1:6543/catalog_db")
    monkeypatch.setenv("CATALOG_READ_DATABASE_URL", "postgresql+asyncpg://u:p@replica.internal/catalog_db")
    assert replica_url(BY_NAME["catalog"]) == "postgresql+asyncpg://u:p@replica.internal/catalog_db"


def test_pgbackrest_config_keeps_30_days_and_names_this_cluster() -> None:
    text = backup_physical.config_text()
    assert "repo1-retention-full-type=time\nrepo1-retention-full=30\n" in text
    assert f"pg1-path={postgres.DATA}\n" in text and "@" not in text.replace("[commerce]", "")
    assert postgres.ARCHIVE_SETTINGS["archive_command"] == (
        f"'pgbackrest --config={postgres.PGBACKREST_CONF} --stanza=commerce archive-push %p'"
    )


def test_wal_is_archived_at_zstd_level_1_and_backups_at_level_3() -> None:
    """archive-push runs once per WAL segment, per order's share of it: level 1 cost 61.5 ms of CPU per
    segment against level 3's 104.2 for 3.5 % more archive (the same real segments, session 27)."""
    text = backup_physical.config_text()
    sections = text.split("\n[")
    (global_section,) = [s for s in sections if s.startswith("[global]") or s.startswith("global]")]
    (push_section,) = [s for s in sections if s.startswith("global:archive-push]")]
    assert "compress-type=zst\ncompress-level=3\n" in global_section
    assert "compress-level=1" in push_section.splitlines()


def test_the_schedule_is_full_at_two_and_incremental_every_four_hours() -> None:
    jobs = [line.split() for line in backup_physical.schedule().splitlines() if line and not line.startswith("#")]
    assert [(j[0], j[1], j[5], j[-2]) for j in jobs] == [
        ("0", "2", "postgres", "--type=full"),
        ("0", "6,10,14,18,22", "postgres", "--type=incr"),
    ]
    assert all(f"--config={postgres.PGBACKREST_CONF}" in j for j in jobs)


CATALOG_TOC = """;
; Archive created at 2026-11-27 12:49:16 UTC
;     dbname: catalog_db
;     TOC Entries: 48
;
3395; 6104 16915 PUBLICATION - catalog_outbox catalog_svc
3396; 6106 16916 PUBLICATION TABLE public catalog_outbox event_store catalog_svc
"""


def test_a_dump_names_its_database_and_loses_only_the_publication_itself() -> None:
    assert backup.dumped_database(CATALOG_TOC) == "catalog_db"
    assert backup.dumped_database(";\n; no header\n") is None
    kept = backup.without_publication(CATALOG_TOC)
    assert "PUBLICATION - catalog_outbox" not in kept and "PUBLICATION TABLE public catalog_outbox" in kept


def test_a_restore_refuses_another_databases_dump_before_touching_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # `just restore analytics <a catalog dump>` would drop and create catalog's tables in analytics_db.
    archive = tmp_path / "20261127_124916_catalog_db.backup"
    archive.write_bytes(b"PGDMP")
    monkeypatch.setattr(backup, "table_of_contents", lambda path: CATALOG_TOC)
    ran: list[object] = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit, match=r"is a dump of catalog_db, not analytics_db: `just restore analytics`"):
        backup.restore(BY_NAME["analytics"], archive)
    assert not ran


@pytest.mark.skipif(shutil.which("pg_restore") is None, reason="pg_restore not installed")
def test_a_file_that_is_no_dump_is_refused_in_pg_restores_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proc, "running", lambda component: False)  # the stack's consumer, if any, is stopped
    garbage = tmp_path / "x.backup"
    garbage.write_text("garbage\n")
    with pytest.raises(SystemExit, match=r"is not a dump pg_restore can read: .*valid archive"):
        backup.main(["--restore", "analytics", str(garbage)])


def _backup(label: str, stop: dt.datetime, lsn_stop: str) -> dict[str, object]:
    return {"label": label, "type": "full", "timestamp": {"stop": stop.timestamp()}, "lsn": {"stop": lsn_stop}}


def test_the_dry_run_names_the_backup_a_recovery_starts_from_and_the_wal_to_replay() -> None:
    two = dt.datetime(2026, 11, 27, 2, 3, 15, tzinfo=dt.UTC)
    entries = [_backup("20261127-020312F", two, "0/5000050"), _backup("20261127-060000I", two.replace(hour=6), "1/0")]
    since = two.replace(hour=4)
    plan = pitr.dry_run_plan(two.replace(hour=5), since, entries, lsn_now=0xA_AF000000)
    assert "starts from 20261127-020312F" in plan[2]
    assert plan[3].startswith("WAL written since that backup: 42.7 GiB")
    assert pitr.base_backup(two.replace(hour=7), entries) is entries[1]
    assert pitr.dry_run_plan(two.replace(hour=1), since, entries, None)[-1].startswith("no backup ended before")


def test_a_recovery_to_before_every_backup_is_refused_before_anything_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    # pgBackRest would restore the latest backup for an unreachable time target and PostgreSQL refuse to
    # start on it: the stack would be left down.
    two = dt.datetime(2026, 11, 27, 2, 3, 15, tzinfo=dt.UTC)
    monkeypatch.setattr(backup_physical, "backups", lambda: [_backup("20261127-020312F", two, "0/5000050")])
    monkeypatch.setattr(proc, "running", lambda name: False)
    monkeypatch.setattr(stack, "exclusive", lambda: pytest.fail("the stack was touched"))
    with pytest.raises(SystemExit, match="no backup ended before 2026-11-27T01:03:15"):
        pitr.pitr(two.replace(hour=1), two.replace(hour=0))


def test_a_restore_under_a_running_consumer_of_that_database_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # operations.md: stop the group that writes the database first, or what it applied since the dump is lost.
    archive = tmp_path / "20261127_125333_analytics_db.backup"
    archive.write_bytes(b"PGDMP")
    assert backup.writers(BY_NAME["analytics"]) == [("analytics", "analytics-consumer")]
    assert ("order-references", "order-references") in backup.writers(BY_NAME["order"])
    monkeypatch.setattr(proc, "running", lambda component: component == "analytics-consumer")
    monkeypatch.setattr(backup, "restore", lambda spec, path: pytest.fail("restored under a running consumer"))
    with pytest.raises(SystemExit, match=r"analytics-consumer is running .* `just stop analytics-consumer`"):
        backup.main(["--restore", "analytics", str(archive)])
    restored: list[str] = []
    monkeypatch.setattr(proc, "running", lambda component: False)
    monkeypatch.setattr(backup, "restore", lambda spec, path: restored.append(spec.database))
    assert backup.main(["--restore", "analytics", str(archive)]) == 0 and restored == ["analytics_db"]
