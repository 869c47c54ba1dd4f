"""The settings classes the code declares (apps/common/settings.py), found by scanning apps/."""

from __future__ import annotations

import importlib
from pathlib import Path

from apps.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_classes() -> list[type[Settings]]:
    """Every Settings class under apps/ (a service's settings.py, the pool's, Redis', ...)."""
    found: list[type[Settings]] = []
    for path in sorted((ROOT / "apps").rglob("*.py")):
        if "(Settings):" not in path.read_text():
            continue
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        found += (
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Settings) and value.__module__ == module.__name__
        )
    return found
