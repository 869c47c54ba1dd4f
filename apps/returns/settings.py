"""The returns policy's numbers, from the environment when asked (never at import)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

__all__ = ["ReturnsSettings", "settings"]


@dataclass(frozen=True, slots=True)
class ReturnsSettings:
    # How long after delivery an order may be returned (RETURNS_WINDOW_DAYS, 30).
    window: dt.timedelta
    # How long a request waits for approval and for its items to come back (RETURNS_EXPIRY_DAYS, 14).
    expiry: dt.timedelta


def settings() -> ReturnsSettings:
    return ReturnsSettings(
        window=dt.timedelta(days=float(os.environ.get("RETURNS_WINDOW_DAYS", "30"))),
        expiry=dt.timedelta(days=float(os.environ.get("RETURNS_EXPIRY_DAYS", "14"))),
    )
