"""apps/<service>/ has the shared shape, and README's Layout names every file a service has.

A newcomer opens any service and finds the same few files (README, "Layout"); a file only one service has
is listed there with what it is for, and a shared file a service lacks is listed with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apps.common.topology import SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("app.py", "controllers.py", "models.py", "schemas.py", "services.py", "rules.py", "migrations")


def layout() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("\n## ", 1)[0]


def service_files(name: str) -> list[str]:
    folder = ROOT / "apps" / name
    return sorted(
        path.name
        for path in folder.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path.is_dir() and path.name == "migrations")
    )


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_each_service_has_the_shared_files(name: str) -> None:
    assert set(SHARED) <= set(service_files(name)), name


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_readme_layout_names_every_file_of_a_service(name: str) -> None:
    text = layout()
    unnamed = [file for file in service_files(name) if not re.search(rf"(?<![\w.]){re.escape(file)}", text)]
    assert unnamed == [], f"apps/{name}/: add these to README's Layout with what they are for"


def test_no_two_test_modules_share_a_file_name() -> None:
    """tests/ has no __init__.py per folder, so pytest imports each test module by its bare name: two files
    of one name (tests/unit/x.py, tests/integration/x.py) pass when run alone and stop the whole suite at
    collection ("import file mismatch")."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
