"""Every variable the returns service's processes read (docs/operations.md, Settings), read once at start."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from apps.common.settings import DAY_S, Settings, env, once

__all__ = ["ReturnsSettings", "settings"]


@dataclass(frozen=True, slots=True)
class ReturnsSettings(Settings):
    # How long after delivery an order may be returned (at most a year, and the next at most a year too).
    window_days: float = env("RETURNS_WINDOW_DAYS", 30.0, above=0, maximum=365)
    # How long a request waits for approval and for its items to come back.
    expiry_days: float = env("RETURNS_EXPIRY_DAYS", 14.0, above=0, maximum=365)
    # The calls to the order, payment and customer services: past this, a 503 naming the service.
    dependency_timeout_s: float = env("RETURNS_DEPENDENCY_TIMEOUT_S", 2.0, above=0, maximum=DAY_S)
    # The returns sweeper (apps/returns/sweeper.py): its pause between rounds and its /metrics port (0: none).
    sweeper_poll_s: float = env("RETURNS_SWEEPER_POLL_S", 1.0, above=0, maximum=DAY_S)
    sweeper_port: int = env("RETURNS_SWEEPER_PORT", 0, minimum=0, maximum=65535)

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(days=self.window_days)

    @property
    def expiry(self) -> dt.timedelta:
        return dt.timedelta(days=self.expiry_days)


settings = once(ReturnsSettings)
