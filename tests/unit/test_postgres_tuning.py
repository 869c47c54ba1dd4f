"""PostgreSQL's WAL tuning reaches a cluster made before it: only what differs is altered, then one reload."""

from __future__ import annotations

import pytest

from infra import postgres


def _server(settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []

    def psql_admin(sql: str, database: str = "postgres") -> str:
        sent.append(sql)
        if sql.startswith("SELECT name, setting FROM pg_settings"):
            return "".join(f"{name}|{value}\n" for name, value in settings.items())
        return ""

    monkeypatch.setattr(postgres, "psql_admin", psql_admin)
    return sent


def test_an_older_cluster_gets_what_differs_and_one_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _server({**postgres.TUNING, "checkpoint_timeout": "300", "wal_compression": "off"}, monkeypatch)
    postgres.tune()
    assert sent[1:] == [
        "ALTER SYSTEM SET wal_compression = 'lz4'",
        "ALTER SYSTEM SET checkpoint_timeout = '900'",
        "SELECT pg_reload_conf()",
    ]


def test_a_tuned_cluster_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _server(dict(postgres.TUNING), monkeypatch)
    postgres.tune()
    assert len(sent) == 1  # the look, nothing else


def test_durability_settings_are_not_part_of_the_tuning() -> None:
    assert not {"fsync", "synchronous_commit", "full_page_writes"} & {*postgres.TUNING, *postgres.SETTINGS}
