"""Every service's OpenAPI document, fuzzed by schemathesis with all checks on: zero failures, no 5xx.

Schemathesis generates valid and invalid requests from the document (examples, coverage, fuzzing and
stateful phases) and checks each answer against it: the status code is documented, a valid request is not
refused, an invalid one is, the body matches the declared schema, `Allow` matches the methods, no 5xx.
The run is bounded (``FUZZ_MAX_SECONDS`` per service, a fixed seed unless ``FUZZ_SEED`` says otherwise;
under a time budget the fuzzing and stateful phases draw new cases until it is spent, so
``FUZZ_MAX_EXAMPLES`` only bounds each draw) so the suite stays short; raise the bounds locally to search
harder. ``FUZZ_CONCURRENCY`` services are fuzzed at once (see FuzzRuns). ``schemathesis.toml`` beside this
file holds the one setting that differs from schemathesis' defaults, and says why.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.common.topology import SERVICES, ServiceSpec
from infra.paths import STATE
from tests.support.http import auth_headers

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "10")
MAX_SECONDS = os.environ.get("FUZZ_MAX_SECONDS", "25")
SEED = os.environ.get("FUZZ_SEED", "20261126")
# A run keeps under one core of a 2-core machine busy: schemathesis' own Python ~0.6 of a core (it waits on
# the service the rest of the time), the service ~0.1-0.2 and PostgreSQL a little. Two at once about fill
# such a machine, more would take from each other's budgets (docs/benchmarks.md, session 30). What each run
# did is written to .stack/fuzz-cases.json: cases generated and seconds, per service.
CONCURRENCY = int(os.environ.get("FUZZ_CONCURRENCY", "2"))
SERVICES_WITH_API = [spec for spec in SERVICES if (REPO / "apps" / spec.name / "app.py").exists()]

pytestmark = pytest.mark.usefixtures("stack")


def _schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a dev dependency: uv sync"
    return found


def _argv(spec: ServiceSpec) -> list[str]:
    port = int(os.environ.get(f"{spec.name.upper()}_PORT", spec.port))
    return [
        _schemathesis(),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"http://127.0.0.1:{port}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        # An admin may call every operation; the authorization test checks the other roles.
        "--header",
        f"Authorization: {auth_headers('admin')['Authorization']}",
        "--request-timeout",
        "10",
        "--max-time",
        MAX_SECONDS,
        "--no-color",
        "--output-truncate",
        "false",
    ]


class FuzzRuns:
    """One schemathesis process per service, CONCURRENCY at a time, in the order the tests ask for them.

    A test starts its own service's run if it is not running yet, tops the running set up with the next
    selected services' runs, and waits for its own: while it waits, the next test's run has already spent
    part of its budget, so the tests' wall time is about the budgets divided by CONCURRENCY. Each run is
    still its own process with its own budget, seed and report, and each test asserts on its own run."""

    def __init__(self, order: list[ServiceSpec], workdir: Path) -> None:
        self.order = order
        self.workdir = workdir
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.started: set[str] = set()
        self.done: dict[str, dict[str, Any]] = {}

    def _start(self, spec: ServiceSpec) -> None:
        cwd = self.workdir / spec.name
        cwd.mkdir()
        report = cwd / "report.txt"
        with report.open("wb") as out:
            process = subprocess.Popen(_argv(spec), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        self.running[spec.name] = (process, report)
        self.started.add(spec.name)

    def result(self, spec: ServiceSpec) -> tuple[int, str]:
        if spec.name not in self.started:
            self._start(spec)
        for following in self.order:
            if len([p for p, _ in self.running.values() if p.poll() is None]) >= CONCURRENCY:
                break
            if following.name not in self.started:
                self._start(following)
        process, report = self.running.pop(spec.name)
        try:
            returncode = process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        text = report.read_text(errors="replace")
        generated = re.search(r"(\d+) generated", text)
        took = re.findall(r" in ([\d.]+)s =+", text)  # schemathesis' closing line: the run's own duration
        self.done[spec.name] = {
            "status": returncode,
            "cases_generated": int(generated.group(1)) if generated else None,
            "seconds": float(took[-1]) if took else None,
        }
        return returncode, text

    def close(self) -> None:
        for process, _ in self.running.values():
            process.kill()
            process.wait()
        if self.done:
            summary = {
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "concurrency": CONCURRENCY,
                "max_seconds": float(MAX_SECONDS),
                "seed": SEED,
                "services": self.done,
            }
            (STATE / "fuzz-cases.json").write_text(json.dumps(summary, indent=2) + "\n")


@pytest.fixture(scope="module")
def fuzz_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRuns]:
    selected = [
        item.callspec.params["spec"]
        for item in request.session.items
        if item.path == Path(__file__) and hasattr(item, "callspec") and "spec" in item.callspec.params
    ]
    runs = FuzzRuns(selected, tmp_path_factory.mktemp("fuzz"))
    yield runs
    runs.close()


@pytest.mark.slow
@pytest.mark.parametrize("spec", SERVICES_WITH_API, ids=lambda spec: spec.name)
def test_openapi_document_holds_under_fuzzing(spec: ServiceSpec, fuzz_runs: FuzzRuns) -> None:
    returncode, report = fuzz_runs.result(spec)
    print(report[-4000:])
    assert returncode == 0, f"schemathesis found failures in the {spec.name} service:\n{report[-20000:]}"
