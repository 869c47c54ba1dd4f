"""What the stack's log files (.stack/logs: services, consumers, PostgreSQL, Kafka, ...) got since a mark."""

from __future__ import annotations

from pathlib import Path

from infra.paths import REPO

LOGS = REPO / ".stack" / "logs"


def sizes() -> dict[Path, int]:
    """Each log file's size now: the mark ``written_since`` reads from."""
    return {path: path.stat().st_size for path in LOGS.glob("*.log") if path.is_file()}


def written_since(before: dict[Path, int]) -> dict[Path, bytes]:
    """What each log file got since ``before`` (a file that shrank was rotated: read it whole)."""
    out: dict[Path, bytes] = {}
    for path, size in sizes().items():
        start = before.get(path, 0)
        start = start if size >= start else 0
        with path.open("rb") as file:
            file.seek(start)
            out[path] = file.read()
    return out
