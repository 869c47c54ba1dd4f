"""Where the local stack keeps its state (ignored by git) and its cached jars (outside the work tree)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("STACK_STATE_DIR", REPO / ".stack"))
LOGS = STATE / "logs"
PIDS = STATE / "pids"
CONFIG_TEMPLATES = Path(__file__).resolve().parent / "config"
# Jars are cached per user, not per clone, so a fresh clone reuses what an earlier one resolved.
CACHE = Path(os.environ.get("COMMERCE_OUTBOX_CACHE", Path.home() / ".cache" / "commerce-outbox"))


def log_file(component: str) -> Path:
    return LOGS / f"{component}.log"


def pid_file(component: str) -> Path:
    return PIDS / f"{component}.pid"


def ensure_dirs() -> None:
    for folder in (STATE, LOGS, PIDS):
        folder.mkdir(parents=True, exist_ok=True)
