"""`just migrate`'s command line: help, and a misspelt service refused before any database is migrated
(it was a KeyError traceback after migrating the names before it)."""

from __future__ import annotations

import pytest

from apps.common.topology import SERVICES, ServiceSpec
from infra import migrate


@pytest.fixture
def migrated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    done: list[str] = []

    def upgrade(spec: ServiceSpec, revision: str = "head") -> None:
        done.append(spec.name)

    monkeypatch.setattr(migrate, "upgrade", upgrade)
    return done


def test_help_names_the_services(migrated: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        migrate.main(["--help"])
    assert exit_.value.code == 0 and not migrated
    assert "just migrate order customer" in capsys.readouterr().out


def test_an_unknown_service_migrates_nothing(migrated: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        migrate.main(["order", "bogus"])
    assert exit_.value.code == 2 and not migrated
    assert "no service bogus; services: catalog, customer" in capsys.readouterr().err


def test_names_or_every_service(migrated: list[str]) -> None:
    assert migrate.main(["order", "customer"]) == 0 and migrated == ["order", "customer"]
    migrated.clear()
    assert migrate.main([]) == 0 and migrated == [spec.name for spec in SERVICES]
