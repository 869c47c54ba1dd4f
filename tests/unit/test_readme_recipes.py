"""The README's recipes are the justfile's: each recipe is in the README, and each `just X` the docs quote
is a recipe (`just --list` and the front door never disagree)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/operations.md", "docs/decisions.md", "docs/events/routing.md")


def recipes() -> set[str]:
    # A recipe line: its name at the start of a line, then its parameters, then a colon (not ':=').
    found = re.findall(r"^([a-z][a-z0-9-]*)(?:\s[^:\n]*)?:(?!=)", (ROOT / "justfile").read_text(), re.MULTILINE)
    return set(found) - {"default"}


def quoted(doc: str) -> set[str]:
    # `just stop|start|restart X` quotes three (in a table cell the bars are escaped: stop\|start).
    runs = re.findall(r"`just ([a-z][a-z0-9-]*(?:\\?\|[a-z][a-z0-9-]*)*)", (ROOT / doc).read_text())
    return {name for run in runs for name in run.replace("\\", "").split("|")}


def test_the_recipe_scan_finds_the_justfile() -> None:
    assert {"up", "down", "status", "replay", "dlq", "token", "backup-schedule"} <= recipes()


def test_every_recipe_is_in_the_readme() -> None:
    assert sorted(recipes() - quoted("README.md")) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_recipe_the_docs_quote_exists(doc: str) -> None:
    assert sorted(quoted(doc) - recipes()) == []
