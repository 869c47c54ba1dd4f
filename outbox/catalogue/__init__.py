"""Event catalogue: every registered schema as JSON Schema, its docs page, and compatibility rules.

schema          canonical JSON Schema per event version (build_catalogue, dump_catalogue)
compatibility   what may change between the committed catalogue and the code (check_compatibility)
discovery       importing the project's event modules (discover_event_modules)
markdown        the docs page (render_markdown)
cli             python -m outbox.catalogue write|check (main)
"""

from __future__ import annotations

from outbox.catalogue.cli import main
from outbox.catalogue.compatibility import VERSIONING_RULES, check_compatibility
from outbox.catalogue.discovery import discover_event_modules
from outbox.catalogue.markdown import render_markdown
from outbox.catalogue.schema import build_catalogue, dump_catalogue

__all__ = [
    "VERSIONING_RULES",
    "build_catalogue",
    "check_compatibility",
    "discover_event_modules",
    "dump_catalogue",
    "main",
    "render_markdown",
]
