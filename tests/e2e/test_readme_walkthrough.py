"""The README's "A first order, by hand" block, run as a newcomer would paste it into a shell.

The block is read from README.md at test time, so the documented commands and bodies are the ones tested:
a wrong port, path, field name or status there fails here. Each ``#=>`` line in the block is the output
expected from the command above it; the block's own ``wait_for`` polls the asynchronous steps (saga,
payment, projections) with a deadline and fails the shell when one does not come.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from infra.paths import REPO

pytestmark = pytest.mark.usefixtures("stack")

SECTION = "### A first order, by hand"
EXPECTED = "#=> "


def walkthrough() -> str:
    """The first ``sh`` block after the section's heading."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    match = re.compile(r"^```sh\n(.*?)^```$", re.M | re.S).search(readme, start)
    assert match is not None, f"no sh block after {SECTION!r} in README.md"
    return match.group(1)


def test_the_readme_walkthrough_runs_as_written() -> None:
    for tool in ("curl", "jq", "just", "bash"):
        assert shutil.which(tool), f"{tool} is needed by the README's walkthrough (infra/bootstrap.sh installs jq)"
    block = walkthrough()
    expected = [line.removeprefix(EXPECTED) for line in block.splitlines() if line.startswith(EXPECTED)]
    assert len(expected) >= 10, "the walkthrough shows what its steps print, so there is something to compare"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    printed = done.stdout.splitlines()
    assert done.returncode == 0, f"the walkthrough failed (rc {done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert printed == expected, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
