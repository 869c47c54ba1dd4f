"""Every environment variable the code reads by name is documented (docs/operations.md, "Settings").

A newcomer learns a setting from the docs, not by grepping for os.environ: a variable read under a
literal name in apps/, outbox/, infra/ or bench/ must appear in README.md, docs/operations.md or
docs/decisions.md. Names built at run time (``f"{service}_PORT"``) are documented as patterns there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CODE = ("apps", "outbox", "infra", "bench")
DOCS = ("README.md", "docs/operations.md", "docs/decisions.md")
# Helpers that read one variable by name, e.g. apps/common/logs.py _env_float("LOG_FLUSH_MS", 50.0).
READERS = {"getenv", "_env_float", "_env_int"}


def environment_name(node: ast.AST) -> ast.expr | None:
    """The name expression of ``os.environ.get(NAME)``, ``os.getenv(NAME)``, ``os.environ[NAME]`` or a reader."""
    if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
        return node.slice
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and ast.unparse(func.value).endswith("environ"):
        return node.args[0]
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return node.args[0] if name in READERS else None


def variables_read() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                name = environment_name(node)
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found.setdefault(name.value, f"{path.relative_to(ROOT)}:{name.lineno}")
    return found


def test_the_scan_finds_the_variables_it_should() -> None:
    found = variables_read()
    # One of each way of reading: environ.get, a reader helper, and names the docs long had.
    assert {"ORDER_PRICE_MAX_AGE_S", "LOG_FLUSH_MS", "PG_PORT", "REDIS_COOLDOWN_S"} <= found.keys()
    assert len(found) > 60


def test_every_variable_the_code_reads_is_documented() -> None:
    docs = "\n".join((ROOT / doc).read_text() for doc in DOCS)
    missing = sorted(
        f"{name} ({where})" for name, where in variables_read().items() if not re.search(rf"\b{name}\b", docs)
    )
    assert missing == []
