"""`python -m outbox.catalogue write|check`: write the catalogue files, or check them against the code.

Where the files live and which packages hold the events are the project's settings ([tool.outbox]
catalogue_json, catalogue_markdown, packages; see outbox.config), or flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outbox.catalogue import contracts
from outbox.catalogue.compatibility import check_compatibility
from outbox.catalogue.discovery import discover_event_modules
from outbox.catalogue.markdown import WRITE_HINT, render_markdown
from outbox.catalogue.schema import build_catalogue, dump_catalogue
from outbox.config import settings
from outbox.events import EventRegistry, default_registry

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True, slots=True)
class Files:
    """The two committed files, and how to name them in messages (relative to the project root)."""

    root: Path
    json: Path
    markdown: Path

    @property
    def json_path(self) -> Path:
        return self.root / self.json

    @property
    def markdown_path(self) -> Path:
        return self.root / self.markdown


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def _load_committed(text: str | None, label: Path, problems: list[str]) -> dict[str, Any]:
    if text is None:
        return {"events": {}}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{label} is not valid JSON ({exc}); {WRITE_HINT}")
        return {"events": {}}
    if not isinstance(loaded, dict):
        problems.append(f"{label} is not a JSON object; {WRITE_HINT}")
        return {"events": {}}
    return loaded


def write(files: Files, current: dict[str, Any], *, force: bool) -> int:
    problems: list[str] = []
    committed = _load_committed(_read(files.json_path), files.json, problems)
    problems += check_compatibility(committed, current)
    if problems and not force:
        # Refusing here is what gives the rules teeth: rewriting the committed catalogue to match a
        # changed schema would otherwise make `check` pass.
        for problem in problems:
            print(problem, file=sys.stderr)
        print("not written; use --force only for versions that were never published", file=sys.stderr)
        return 1
    files.json_path.parent.mkdir(parents=True, exist_ok=True)
    files.markdown_path.parent.mkdir(parents=True, exist_ok=True)
    files.json_path.write_text(dump_catalogue(current), encoding="utf-8")
    files.markdown_path.write_text(render_markdown(current), encoding="utf-8")
    print(f"wrote {files.json_path} and {files.markdown_path}")
    return 0


def check(files: Files, current: dict[str, Any]) -> int:
    problems: list[str] = []
    committed_text = _read(files.json_path)
    committed = _load_committed(committed_text, files.json, problems)
    problems += check_compatibility(committed, current)
    if committed_text is None:
        problems.append(f"{files.json} is missing; {WRITE_HINT}")
    elif committed_text != dump_catalogue(current):
        problems.append(f"{files.json} is out of date; {WRITE_HINT}")
    markdown = _read(files.markdown_path)
    if markdown is None:
        problems.append(f"{files.markdown} is missing; {WRITE_HINT}")
    elif markdown != render_markdown(current):
        problems.append(f"{files.markdown} is out of date; {WRITE_HINT}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    count = sum(len(entry["versions"]) for entry in current["events"].values())
    print(f"{files.json} is up to date ({count} event versions)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m outbox.catalogue", description=__doc__)
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--root", type=Path, default=None, help="project root (default: the [tool.outbox] one)")
    parser.add_argument("--json", type=Path, default=None, help="catalogue JSON, relative to the root")
    parser.add_argument("--markdown", type=Path, default=None, help="catalogue page, relative to the root")
    parser.add_argument("--package", action="append", default=None, help="package holding <name>.events modules")
    parser.add_argument("--force", action="store_true", help="write even if published versions changed (write only)")
    return parser


def main(argv: Sequence[str] | None = None, *, registry: EventRegistry | None = None) -> int:
    """Run the ``write`` or ``check`` command; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    project = settings()
    json_file = args.json or project.catalogue_json
    markdown_file = args.markdown or project.catalogue_markdown
    if json_file is None or markdown_file is None:
        parser.error(
            "where is the catalogue? set [tool.outbox] catalogue_json and catalogue_markdown, or pass --json/--markdown"
        )
    files = Files(args.root or project.root, json_file, markdown_file)
    if registry is None:
        # The project's own events: who writes and who reads each type is read from its code as well.
        discover_event_modules(args.package)
        current = build_catalogue(
            default_registry,
            producers=contracts.producers(default_registry, args.package),
            consumers=contracts.consumers(default_registry, args.package),
        )
    else:
        current = build_catalogue(registry)
    if args.command == "write":
        return write(files, current, force=args.force)
    return check(files, current)
