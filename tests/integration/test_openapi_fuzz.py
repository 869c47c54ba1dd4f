"""Every service's OpenAPI document, fuzzed by schemathesis with all checks on: zero failures, no 5xx.

Schemathesis generates valid and invalid requests from the document (examples, coverage, fuzzing and
stateful phases) and checks each answer against it: the status code is documented, a valid request is not
refused, an invalid one is, the body matches the declared schema, `Allow` matches the methods, no 5xx.
The run is bounded (``FUZZ_MAX_SECONDS`` per service, a fixed seed unless ``FUZZ_SEED`` says otherwise;
under a time budget the fuzzing and stateful phases draw new cases until it is spent, so
``FUZZ_MAX_EXAMPLES`` only bounds each draw) so the suite stays short; raise the bounds locally to search
harder. ``FUZZ_CONCURRENCY`` services are fuzzed at once (see FuzzRuns). ``schemathesis.toml`` beside this
file holds the one setting that differs from schemathesis' defaults, and says why.

The fuzz changes only what it created (``fuzz_hooks.py``, loaded into each run): benches and soaks run
beside it on the same stack, and the catalog fuzz PATCHed and DELETEd their products, read off the list.
The catalog test checks it on a product of its own made just before the run, newest in the list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.common.topology import SERVICES, ServiceSpec
from infra.paths import STATE
from tests.support.http import auth_headers, service_url

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "10")
MAX_SECONDS = os.environ.get("FUZZ_MAX_SECONDS", "25")
SEED = os.environ.get("FUZZ_SEED", "20261126")
# A run keeps under one core of a 2-core machine busy: schemathesis' own Python ~0.6 of a core (it waits on
# the service the rest of the time), the service ~0.1-0.2 and PostgreSQL a little. Two at once about fill
# such a machine, more would take from each other's budgets (docs/benchmarks.md, session 30). What each run
# did is written to .stack/fuzz-cases.json: cases generated and seconds, per service.
CONCURRENCY = int(os.environ.get("FUZZ_CONCURRENCY", "2"))
# Items each run makes for itself before it starts (fuzz_hooks.py): a catalog run's stateful phase deletes
# ~100 of what it is given.
OWN_ITEMS = {"catalog": 150}
SERVICES_WITH_API = [spec for spec in SERVICES if (REPO / "apps" / spec.name / "app.py").exists()]

pytestmark = pytest.mark.usefixtures("stack")


def _schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a dev dependency: uv sync"
    return found


def _base_url(spec: ServiceSpec) -> str:
    return f"http://127.0.0.1:{int(os.environ.get(f'{spec.name.upper()}_PORT', spec.port))}"


def _env(spec: ServiceSpec, cwd: Path) -> dict[str, str]:
    """The run's environment: fuzz_hooks.py and what it needs to make items of its own."""
    return {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("fuzz_hooks.py")),
        "FUZZ_BASE_URL": _base_url(spec),
        "FUZZ_AUTHORIZATION": auth_headers("admin")["Authorization"],
        "FUZZ_CONFINED_REPORT": str(cwd / "confined.json"),
        "FUZZ_OWN_ITEMS": str(OWN_ITEMS.get(spec.name, 0)),
    }


def _argv(spec: ServiceSpec) -> list[str]:
    return [
        _schemathesis(),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{_base_url(spec)}/schema/openapi.json",
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
        self.bystanders: dict[str, dict[str, Any]] = {}  # per service: an item of someone else's, as made

    def _start(self, spec: ServiceSpec) -> None:
        cwd = self.workdir / spec.name
        cwd.mkdir()
        report = cwd / "report.txt"
        if spec.name == "catalog":
            self.bystanders[spec.name] = _bystander_product()
        with report.open("wb") as out:
            process = subprocess.Popen(_argv(spec), cwd=cwd, env=_env(spec, cwd), stdout=out, stderr=subprocess.STDOUT)
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
        confined = report.with_name("confined.json")
        self.done[spec.name] = {
            "status": returncode,
            "cases_generated": int(generated.group(1)) if generated else None,
            "seconds": float(took[-1]) if took else None,
            "confined": json.loads(confined.read_text()) if confined.exists() else None,
        }
        return returncode, text

    def close(self) -> None:
        for process, _ in self.running.values():
            process.kill()
            process.wait()
        if self.done:
            for run in self.done.values():  # the ids were for the test; the file keeps the counts
                if run["confined"]:
                    run["confined"]["created"] = len(run["confined"]["created"])
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
    if (bystander := fuzz_runs.bystanders.get(spec.name)) is not None:
        confined = fuzz_runs.done[spec.name]["confined"]
        assert confined is not None, "fuzz_hooks.py did not run"
        assert bystander["id"] not in confined["created"]
        assert _product(bystander["id"]) == bystander, "the fuzz changed a product it did not create"


def _bystander_product() -> dict[str, Any]:
    """A product made just before the catalog run, as a bench's would be: first in the list the fuzz reads."""
    body = {"sku": f"BYSTANDER-{uuid.uuid4().hex[:12].upper()}", "name": "Someone else's", "price": "7.00"}
    with httpx.Client(base_url=service_url("catalog"), headers=auth_headers("admin"), timeout=10) as http:
        response = http.post("/api/products", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _product(product_id: str) -> dict[str, Any] | int:
    with httpx.Client(base_url=service_url("catalog"), headers=auth_headers("admin"), timeout=10) as http:
        response = http.get(f"/api/products/{product_id}")
    return dict(response.json()) if response.status_code == 200 else response.status_code
