"""The stack's own status command sees every component and connector up."""

from __future__ import annotations

import pytest

from infra import stack

pytestmark = pytest.mark.usefixtures("stack")


def test_status_reports_every_component_up(capsys: pytest.CaptureFixture[str]) -> None:
    code = stack.status()
    out = capsys.readouterr().out
    assert code == 0, out
    for component in ("postgres", "redis", "kafka", "connect", "connector order-outbox"):
        assert component in out
    assert "DOWN" not in out
