"""The stack's state directory (pid files, logs, `just stop` markers, up.lock) moved to a test's tmp_path,
so unit tests of infra.stack and infra.proc start and stop throwaway components without touching the
running stack's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import paths, stack


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for module in (paths, stack):
        monkeypatch.setattr(module, "STATE", tmp_path, raising=False)
        monkeypatch.setattr(module, "PIDS", tmp_path / "pids", raising=False)
    monkeypatch.setattr(paths, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(stack, "HELD", tmp_path / "held")
    return tmp_path
