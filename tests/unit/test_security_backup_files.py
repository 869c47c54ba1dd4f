"""A logical dump is readable by its owner only (session 29, S): `just backup` wrote each database's dump
with the process umask (0644 in a 0755 folder), while the cluster keeps the same data in a 0700 directory."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest

from apps.common.topology import BY_NAME
from infra import backup

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fake_pg_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "_pg_argv", lambda tool, database: ["sh", "-c", f"printf 'a dump of {database}'", "sh"])


@pytest.mark.usefixtures("fake_pg_dump")
def test_a_dump_and_its_new_folder_are_the_owners_only(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    spec = BY_NAME["catalog"]
    written = backup.dump(spec, folder)
    assert written.read_text() == f"a dump of {spec.database}"
    assert _mode(written) == 0o600
    assert _mode(folder) == 0o700


@pytest.mark.usefixtures("fake_pg_dump")
def test_a_partial_file_left_by_a_failed_run_does_not_pass_its_mode_on(tmp_path: Path) -> None:
    spec, at = BY_NAME["catalog"], dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    leftover = (tmp_path / backup.dump_name(spec, at)).with_suffix(".partial")
    leftover.write_text("old")
    leftover.chmod(0o644)
    assert _mode(backup.dump(spec, tmp_path, at=at)) == 0o600
