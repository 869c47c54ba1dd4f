"""`just keys`'s command line names what it takes when the first word is neither a service nor a command
(a misspelt service read as "just keys customer: invalid choice", the default having swallowed it)."""

from __future__ import annotations

import pytest

from apps.common import sealed_tables


def test_a_misspelt_service_names_services_and_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sealed_tables, "service_keys", lambda service: pytest.fail("a keyring was opened"))
    assert sealed_tables.main(["ordr", "status"]) == 2
    err = capsys.readouterr().err
    assert "'ordr' is neither a service (customer, order, checkout) nor a command (status, rotate" in err


def test_a_command_alone_still_means_the_customer_service(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    class Keys:
        def main(self, args: list[str]) -> int:
            return 0

    def service_keys(service: str) -> Keys:
        asked.append(service)
        return Keys()

    monkeypatch.setattr(sealed_tables, "service_keys", service_keys)
    assert sealed_tables.main(["status"]) == 0 and sealed_tables.main(["order", "status"]) == 0
    assert asked == ["customer", "order"]
