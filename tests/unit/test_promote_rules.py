"""The pure parts of `just promote` (infra/promote.py): which cluster pgBackRest's config names, the replica's
flags, and when it refuses. The promotion itself runs on a scratch pair: tests/integration/test_replica_promotion.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.common.topology import replica_port
from infra import backup_physical, postgres, promote, replica


def test_the_config_names_the_replica_once_it_is_promoted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Read from its data directory (pg_basebackup -R leaves standby.signal, promotion removes it), so the
    config `just up` writes after a promotion still names the promoted cluster."""
    data = tmp_path / "replica"
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    (data / "standby.signal").touch()
    monkeypatch.setattr(replica, "DATA", data)
    assert backup_physical.primary_site().data == postgres.DATA
    assert f"pg1-path={postgres.DATA}\n" in backup_physical.config_text()

    (data / "standby.signal").unlink()
    site = backup_physical.primary_site()
    assert (site.data, site.port, site.socket) == (data, replica_port(), replica.SOCKET_DIR)
    text = backup_physical.config_text()
    assert f"pg1-path={data}\n" in text and f"pg1-port={replica_port()}\n" in text


def test_a_replica_that_was_never_made_is_not_promoted(tmp_path: Path) -> None:
    assert not replica.promoted(tmp_path / "none")


def test_the_replica_keeps_the_copied_archive_mode() -> None:
    """archive_mode=off on its command line left a promoted replica archiving nothing (session 31)."""
    assert not any(option.startswith("archive_mode") for option in replica.server_options())


def test_it_refuses_while_the_primary_answers_or_the_replica_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    p = promote.Promotion(
        backup_physical.Site(Path("/nowhere"), 6001, Path("/nowhere-run")), 6000, Path("/nowhere-br"), lambda: None
    )
    up: set[int] = set()
    monkeypatch.setattr(promote, "answers", lambda port: port in up)
    assert [r.split(":")[0] for r in promote.refusals(p)] == [
        "the replica does not answer on port 6001 (`just start replica`)"
    ]
    up |= {6000, 6001}
    [why] = promote.refusals(p)
    assert "the primary answers on port 6000" in why and "two primaries" in why
    with pytest.raises(promote.Refused, match="two primaries"):
        promote.promote(p, say=lambda _: None)  # before anything is written or run
    up.discard(6000)
    assert promote.refusals(p) == []


def test_without_yes_it_only_says_whether_it_may(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(promote, "answers", lambda port: port == replica_port())
    monkeypatch.setattr(promote, "promote", lambda *_, **__: pytest.fail("promoted without --yes"))
    assert promote.main([]) == 0
    assert "`just promote --yes` does it" in capsys.readouterr().out
    monkeypatch.setattr(promote, "answers", lambda port: True)
    assert promote.main(["--yes"]) == 2
    assert "refusing: the primary answers" in capsys.readouterr().err
