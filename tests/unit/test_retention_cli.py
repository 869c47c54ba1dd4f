"""`just retention` refuses to empty the outbox: `--outbox-days 0` deleted every event_store row of three
service databases on the shared stack (2026-11-27). Nothing younger than the events' replay window may go:
the outbox is the audit log, and the warehouse reads its own earlier answers there."""

from __future__ import annotations

import pytest

from apps.checkout import lifecycle
from infra import retention
from outbox import retention as library


@pytest.fixture
def purged(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def purge(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    monkeypatch.setattr(library, "main", purge)
    monkeypatch.setattr(lifecycle, "main", lambda: 0)
    return calls


@pytest.mark.parametrize("days", ["0", "30", "364"])
def test_an_outbox_younger_than_a_year_is_not_deleted(
    days: str, purged: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        retention.main(["--outbox-days", days])
    assert exit_.value.code == 2 and not purged
    assert "--outbox-days must be at least 365" in capsys.readouterr().err


def test_a_year_or_more_and_the_defaults_reach_the_library(purged: list[list[str]]) -> None:
    assert retention.main(["--outbox-days", "365"]) == 0 and "--outbox-days=365" in purged[0]
    assert retention.main([]) == 0 and not [arg for arg in purged[1] if arg.startswith("--outbox-days")]
