"""Every service's OpenAPI document, fuzzed by schemathesis with all checks on: zero failures, no 5xx.

Schemathesis generates valid and invalid requests from the document (examples, coverage, fuzzing and
stateful phases) and checks each answer against it: the status code is documented, a valid request is not
refused, an invalid one is, the body matches the declared schema, `Allow` matches the methods, no 5xx.
The run is bounded (``FUZZ_MAX_EXAMPLES`` per operation, ``FUZZ_MAX_SECONDS`` per service, a fixed seed
unless ``FUZZ_SEED`` says otherwise) so the suite stays short; raise the bounds locally to search harder.
``schemathesis.toml`` beside this file holds the one setting that differs from schemathesis' defaults,
and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apps.common.topology import SERVICES, ServiceSpec
from tests.support.http import auth_headers

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "10")
SEED = os.environ.get("FUZZ_SEED", "20261126")
SERVICES_WITH_API = [spec for spec in SERVICES if (REPO / "apps" / spec.name / "app.py").exists()]

pytestmark = pytest.mark.usefixtures("stack")


def _schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a dev dependency: uv sync"
    return found


@pytest.mark.slow
@pytest.mark.parametrize("spec", SERVICES_WITH_API, ids=lambda spec: spec.name)
def test_openapi_document_holds_under_fuzzing(spec: ServiceSpec, tmp_path: Path) -> None:
    port = int(os.environ.get(f"{spec.name.upper()}_PORT", spec.port))
    result = subprocess.run(
        [
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
            os.environ.get("FUZZ_MAX_SECONDS", "25"),
            "--no-color",
            "--output-truncate",
            "false",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    report = result.stdout + result.stderr
    print(report[-4000:])
    assert result.returncode == 0, f"schemathesis found failures in the {spec.name} service:\n{report[-20000:]}"
