"""`just logs NAME`: a name that is no component says so, instead of "no logs yet" (read as a silent one)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra import stack

pytestmark = pytest.mark.unit


@pytest.fixture
def logs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    monkeypatch.setattr(stack, "LOGS", tmp_path)
    monkeypatch.setattr(stack, "log_file", lambda name: tmp_path / f"{name}.log")
    tailed: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kwargs: tailed.append(list(argv)))
    (tmp_path / "order-api.log").write_text("a line\n")
    (tmp_path / "first-backup.log").write_text("a line\n")
    return tailed


def test_a_misspelt_component_is_named_unknown_with_the_list(logs_dir: list[list[str]]) -> None:
    with pytest.raises(SystemExit) as refused:
        stack.logs("order_api", follow=False)
    assert "unknown component 'order_api'" in str(refused.value)
    assert "order-api" in str(refused.value)
    assert logs_dir == []


def test_a_component_that_has_not_logged_yet_says_so(logs_dir: list[list[str]]) -> None:
    with pytest.raises(SystemExit) as empty:
        stack.logs("catalog-api", follow=False)
    assert "no logs yet" in str(empty.value)


@pytest.mark.parametrize("name", ["order-api", "first-backup"])
def test_a_log_file_is_tailed_component_or_not(name: str, logs_dir: list[list[str]], tmp_path: Path) -> None:
    stack.logs(name, follow=True)
    assert logs_dir == [["tail", "-n", "100", "-F", str(tmp_path / f"{name}.log")]]
