"""The outbox library's settings: where a project keeps its events and consumers, where the event catalogue
is written, and the prefix of the event topics.

The library assumes nothing about the project using it; the project says it once, in its pyproject.toml:

    [tool.outbox]
    packages = ["apps"]                              # <package>.<name>.events / .consumers are discovered
    consumer_modules = ["apps.order.references"]     # consumer groups outside <package>.<name>.consumers
    topic_prefix = "commerce"                        # aggregate X is published to "<prefix>.X"
    streams = ["order.payment"]                      # ...but order.payment_* to "<prefix>.order.payment"
    catalogue_json = "docs/events/catalogue.json"    # relative to the project root (the pyproject's folder)
    catalogue_markdown = "docs/events/README.md"

The file is found by walking up from the working directory (OUTBOX_CONFIG may name it instead), read on
first use, never at import. OUTBOX_TOPIC_PREFIX and KAFKA_BOOTSTRAP override from the environment, and the
CLIs take flags. Without any configuration nothing is discovered and topics are Debezium's own default,
``outbox.event.<aggregate>``.
"""

from __future__ import annotations

import functools
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OutboxSettings", "kafka_bootstrap", "load_settings", "settings", "topic_for", "topic_prefix"]

DEBEZIUM_DEFAULT_PREFIX = "outbox.event"


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """What a project told the library; the catalogue paths are relative to ``root``."""

    root: Path
    packages: tuple[str, ...] = ()
    consumer_modules: tuple[str, ...] = ()
    topic_prefix: str = DEBEZIUM_DEFAULT_PREFIX
    # Event type prefixes with a topic of their own (outbox.routing).
    streams: tuple[str, ...] = ()
    catalogue_json: Path | None = None
    catalogue_markdown: Path | None = None
    source: Path | None = field(default=None, compare=False)


def load_settings(start: Path | None = None) -> OutboxSettings:
    """Read [tool.outbox] from the nearest pyproject.toml that has one (or the file OUTBOX_CONFIG names)."""
    explicit = os.environ.get("OUTBOX_CONFIG")
    path = Path(explicit) if explicit else _find_pyproject(start or Path.cwd())
    if path is None:
        root = (start or Path.cwd()).resolve()
        logging.getLogger("outbox.config").warning(
            "no pyproject.toml with [tool.outbox] in %s or above: nothing is discovered, topics are %s.<aggregate>",
            root,
            DEBEZIUM_DEFAULT_PREFIX,
        )
        return OutboxSettings(root=root)
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("outbox", {})
    return _from_table(table, path.resolve().parent, path)


def _find_pyproject(start: Path) -> Path | None:
    for folder in [start.resolve(), *start.resolve().parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "[tool.outbox]" in candidate.read_text(encoding="utf-8"):
            return candidate
    return None


def _from_table(table: dict[str, Any], root: Path, source: Path) -> OutboxSettings:
    packages = table.get("packages", [])
    if isinstance(packages, str):
        packages = [packages]
    return OutboxSettings(
        root=root,
        packages=tuple(str(p) for p in packages),
        consumer_modules=tuple(str(m) for m in table.get("consumer_modules", [])),
        topic_prefix=str(table.get("topic_prefix", DEBEZIUM_DEFAULT_PREFIX)),
        streams=tuple(str(s) for s in table.get("streams", [])),
        catalogue_json=Path(table["catalogue_json"]) if "catalogue_json" in table else None,
        catalogue_markdown=Path(table["catalogue_markdown"]) if "catalogue_markdown" in table else None,
        source=source,
    )


@functools.cache
def settings() -> OutboxSettings:
    """The project's settings, read once per process."""
    return load_settings()


def topic_prefix() -> str:
    return os.environ.get("OUTBOX_TOPIC_PREFIX") or settings().topic_prefix


def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def topic_for(aggregate: str) -> str:
    """An aggregate's topic (route.topic.replacement): where its events go unless a stream takes them
    (outbox.routing.topic_for_event)."""
    return f"{topic_prefix()}.{aggregate}"
