"""Log an outage once when it starts, then rarely while it lasts, and once when it ends.

What fails over and over while a dependency is away (librdkafka's connection failures, ~20 lines a second
from the stack exporter's dead-letter counter while the broker was down; a metrics source failing every
scrape) would otherwise bury everything else in the log. The metrics keep saying it meanwhile
(``commerce_exporter_source_up``); the log says when it began, that it goes on, and when it ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["OutageLog"]

EVERY_S = 300.0


class OutageLog:
    """One outage's log lines: the first failure, then one line per ``every_s`` (with how many failures it
    did not log), then its end."""

    def __init__(
        self, log: logging.Logger, what: str, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log, self.what, self.every_s, self.clock = log, what, every_s, clock
        self.since: float | None = None  # when the outage began (None: no outage)
        self.logged_at = 0.0
        self.unlogged = 0

    def failed(self, detail: str) -> None:
        now = self.clock()
        if self.since is None:
            self.since, self.logged_at, self.unlogged = now, now, 0
            self.log.warning("%s: %s (while it lasts, logged once per %.0f s)", self.what, detail, self.every_s)
        elif now - self.logged_at >= self.every_s:
            self.log.warning(
                "%s for %.0f s: %s (%d more failures not logged)", self.what, now - self.since, detail, self.unlogged
            )
            self.logged_at, self.unlogged = now, 0
        else:
            self.unlogged += 1

    def recovered(self) -> None:
        if self.since is None:
            return
        self.log.warning(
            "%s: over after %.0f s (%d failures since the last line)",
            self.what,
            self.clock() - self.since,
            self.unlogged,
        )
        self.since = None
