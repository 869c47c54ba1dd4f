"""Lint every service's migrations with squawk: `python -m infra.migration_lint [SERVICE ...]`.

Each Alembic revision is rendered to SQL offline (``alembic upgrade prev:rev --sql``), one file per
revision, so squawk knows which tables a revision creates (an index on a table created in the same
revision needs no CONCURRENTLY) and which already hold data. The rules that matter for a live system
refuse: a table rewrite (a column type change, a volatile default, a serial column), an index built
without CONCURRENTLY, a NOT NULL or a constraint added in one step (no NOT VALID), a column or table
dropped or renamed while code may read it, and any ACCESS EXCLUSIVE lock taken without a lock_timeout
(apps/common/migrations_env.py sets one for every migration).

A finding is refused unless waived in infra/migration_lint_waivers.toml, with a reason:

    [[waiver]]
    revision = "order_0003"
    rule = "adding-foreign-key-constraint"
    reason = "order_sagas is created in this revision: the foreign key validates an empty table"

A waiver that matches nothing is an error too, so the list never outlives its reasons.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from advanced_alchemy.alembic.commands import AlembicCommands
from alembic.script import ScriptDirectory

from apps.common.db import alchemy_config
from apps.common.topology import BY_NAME, SERVICES, ServiceSpec
from infra.paths import REPO

WAIVERS = REPO / "infra" / "migration_lint_waivers.toml"
# Style rules, not lock or rewrite hazards: they would only repeat what the models chose on purpose
# (varchar lengths, integer columns, plain CREATE statements inside a transaction, bare timestamps).
EXCLUDED_RULES = (
    "prefer-text-field",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-robust-stmts",
    "prefer-timestamptz",
    # Currency codes are CHAR(3) on purpose (ISO 4217 codes have exactly three letters).
    "ban-char-field",
    # A backfill batch or a VALIDATE may run long by design; they take no lock that blocks traffic,
    # and the lock that would is bounded by lock_timeout (require-lock-timeout stays on).
    "require-statement-timeout",
)


@dataclass(frozen=True)
class Finding:
    revision: str
    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.revision}:{self.line}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Waiver:
    revision: str
    rule: str
    reason: str


def revisions(commands: AlembicCommands) -> list[tuple[str | None, str]]:
    """(down_revision, revision) of the service, oldest first."""
    script = ScriptDirectory.from_config(commands.config)
    ordered = list(reversed(list(script.walk_revisions())))
    return [(_single(rev.down_revision), rev.revision) for rev in ordered]


def _single(down: str | Sequence[str] | None) -> str | None:
    if down is None or isinstance(down, str):
        return down
    raise SystemExit(f"a merge revision ({down}) is not expected: one head per service")


def render(commands: AlembicCommands, down: str | None, revision: str) -> str:
    """The SQL an upgrade from ``down`` to ``revision`` runs, rendered offline (no database needed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        commands.upgrade(f"{down}:{revision}" if down else revision, sql=True)
    return out.getvalue()


def squawk(paths: Sequence[Path]) -> list[dict[str, object]]:
    binary = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    result = subprocess.run(
        [binary, "--reporter", "json", "--pg-version", "15", "--exclude", ",".join(EXCLUDED_RULES), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"squawk failed ({result.returncode}): {result.stderr.strip()}")
    return list(json.loads(result.stdout))


def lint(specs: Sequence[ServiceSpec], workdir: Path) -> list[Finding]:
    files: list[Path] = []
    for spec in specs:
        commands = AlembicCommands(sqlalchemy_config=alchemy_config(spec))
        for down, revision in revisions(commands):
            path = workdir / f"{revision}.sql"
            path.write_text(render(commands, down, revision))
            files.append(path)
    return [
        Finding(Path(str(item["file"])).stem, str(item["rule_name"]), int(str(item["line"])), str(item["message"]))
        for item in squawk(files)
    ]


def load_waivers(path: Path = WAIVERS) -> list[Waiver]:
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("waiver", [])
    waivers = [Waiver(e["revision"], e["rule"], e.get("reason", "").strip()) for e in entries]
    for waiver in waivers:
        if not waiver.reason:
            raise SystemExit(f"{path}: the waiver of {waiver.rule} in {waiver.revision} gives no reason")
    return waivers


def judge(findings: Sequence[Finding], waivers: Sequence[Waiver]) -> tuple[list[Finding], list[Waiver]]:
    """(findings no waiver covers, waivers that cover nothing)."""
    refused = [f for f in findings if not any(w.revision == f.revision and w.rule == f.rule for w in waivers)]
    unused = [w for w in waivers if not any(w.revision == f.revision and w.rule == f.rule for f in findings)]
    return refused, unused


def run(names: Sequence[str]) -> int:
    specs = [BY_NAME[name] for name in names] if names else list(SERVICES)
    with tempfile.TemporaryDirectory(prefix="migration-lint-") as tmp:
        findings = lint(specs, Path(tmp))
    waivers = load_waivers()
    if names:  # a partial run cannot tell an unused waiver of another service
        waivers = [w for w in waivers if w.revision.split("_")[0] in names]
    refused, unused = judge(findings, waivers)
    for finding in refused:
        print(f"refused  {finding}")
    for waiver in unused:
        print(f"unused waiver  {waiver.revision} {waiver.rule}: remove it from {WAIVERS.name}")
    waived = len(findings) - len(refused)
    print(f"{len(findings)} findings, {waived} waived, {len(refused)} refused, {len(unused)} unused waivers")
    return 1 if refused or unused else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("services", nargs="*", help="default: every service")
    return run(parser.parse_args(argv).services)


if __name__ == "__main__":
    sys.exit(main())
