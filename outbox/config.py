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

The library's numbers and durations from the environment (OUTBOX_BATCH_SIZE, OUTBOX_MAX_BACKOFF_S, ...) go
through :func:`read_number` and :func:`read_duration`: a value that is not one, not finite, or out of its
bounds stops the start with a ConfigError naming the variable (``OUTBOX_BATCH_SIZE='0': not an integer from 1
to 1000000``), the rules a project's own settings follow (apps/common/settings.py, which this library does not
import).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

__all__ = [
    "DAY_S",
    "ConfigError",
    "OutboxSettings",
    "duration_s",
    "kafka_bootstrap",
    "load_settings",
    "read_duration",
    "read_number",
    "settings",
    "topic_for",
    "topic_prefix",
]

DEBEZIUM_DEFAULT_PREFIX = "outbox.event"
# The longest a wait (a timeout, interval, lease, delay, backoff or threshold) may be: longer means nothing to a
# consumer or a service (a call, a poll or a cache entry waited on for more than a day), and it keeps a value
# far inside what its use converts it to (a timedelta, Redis' milliseconds, asyncio's timers; librdkafka's and
# lock_timeout's 32-bit milliseconds, ~24.8 days), where 1e300 hours was an OverflowError naming nothing.
DAY_S: Final = 86_400
# A duration as PostgreSQL's lock_timeout takes it: a number, in milliseconds unless a unit follows.
_DURATION: Final = re.compile(r"\s*(?P<number>\d+(\.\d+)?)\s*(?P<unit>us|ms|s|min|h|d)?\s*")
_UNIT_S: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
N = TypeVar("N", int, float)


class ConfigError(ValueError):
    """A variable's value the library cannot take; the message names the variable."""


def read_number(
    name: str, default: N, *, minimum: float | None = None, above: float | None = None, maximum: float
) -> N:
    """The variable ``name`` read now as ``default``'s type (int or float), ``default`` when unset; ConfigError
    naming it unless it is one, finite, and from ``minimum`` (or more than ``above``) to ``maximum``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    kind = type(default)
    word = "an integer" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not {word}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r}: not a finite number")
    low = f"from {minimum} to" if minimum is not None else f"above {above} and of at most"
    if (minimum is not None and value < minimum) or (above is not None and value <= above) or value > maximum:
        raise ConfigError(f"{name}={raw!r}: not {word} {low} {maximum}")
    return value


def duration_s(duration: str) -> float:
    """A duration as PostgreSQL's lock_timeout takes it (``5s``, ``500ms``, ``1min``, ``250``: milliseconds), in
    seconds; ``0`` is 0.0, which lock_timeout reads as no limit. ValueError for anything else."""
    if (match := _DURATION.fullmatch(duration)) is None:
        raise ValueError(f"{duration!r}: not a duration such as 5s, 500ms or 1min")
    return float(match["number"]) * _UNIT_S[match["unit"] or "ms"]


def read_duration(name: str, default: str, *, maximum_s: float = DAY_S) -> str:
    """The variable ``name`` read now as a PostgreSQL duration (:func:`duration_s`), ``default`` when unset;
    ConfigError naming it unless it is one of at most ``maximum_s`` (0: no limit)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        seconds = duration_s(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not a duration such as 5s, 500ms or 1min (0: no limit)") from None
    if seconds > maximum_s:
        raise ConfigError(f"{name}={raw!r}: not a duration of at most {maximum_s:g} s")
    return raw


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
