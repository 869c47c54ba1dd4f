"""Pure analytics rules: which days a sales report covers, from the raw query values. No I/O."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from apps.common.errors import InvalidField
from apps.common.fields import worded

__all__ = [
    "CURRENCY_PATTERN",
    "DEFAULT_WINDOW_DAYS",
    "MAX_WINDOW_DAYS",
    "clamp_window",
    "parse_day",
    "report_window",
]

# ISO 4217 alphabetic codes: the query filter's shape, and what a projection row may carry.
CURRENCY_PATTERN: Final = worded(r"^[A-Z]{3}$", "must be an ISO 4217 currency code in capitals, e.g. USD")

# GET /api/analytics/sales/daily without dates: the last 30 days, today (UTC) included.
DEFAULT_WINDOW_DAYS: Final = 30
# A longer range is cut to its first MAX_WINDOW_DAYS days, never an unbounded list (a client pages by year).
MAX_WINDOW_DAYS: Final = 366

_ISO_DATE_RE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_day(field: str, value: str) -> dt.date:
    """An ISO calendar date (YYYY-MM-DD) given as query parameter ``field``.

    Parsed here rather than by Litestar so that an error names the parameter as the client wrote it:
    ``from`` is a Python keyword, and Litestar would report the handler argument ``from_``.
    """
    if _ISO_DATE_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass  # the right shape but not a day of the calendar, e.g. 2001-02-30
    raise InvalidField(field, "must be a calendar date in ISO format, YYYY-MM-DD", source="query")


def report_window(first: str | None, last: str | None, *, today: dt.date) -> tuple[dt.date, dt.date]:
    """The inclusive day range of a daily report from the raw ``from`` and ``to`` query values.

    ``to`` defaults to today (UTC); ``from`` to 29 days before ``to``, so the default is 30 days. Every
    pair of calendar days is a range: one that starts after it ends is empty, and one longer than
    ``MAX_WINDOW_DAYS`` is cut to its first ``MAX_WINDOW_DAYS`` days (the client asks again from the day
    after). Date arithmetic stops at the calendar's ends (0001-01-01, 9999-12-31) instead of overflowing.
    """
    end = today if last is None else parse_day("to", last)
    start = _days_before(end, DEFAULT_WINDOW_DAYS - 1) if first is None else parse_day("from", first)
    return clamp_window(start, end)


def clamp_window(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """At most ``MAX_WINDOW_DAYS`` days from ``first``; ``first`` after ``last`` stays an empty range."""
    return first, min(last, _days_after(first, MAX_WINDOW_DAYS - 1))


def _days_before(day: dt.date, days: int) -> dt.date:
    return day - dt.timedelta(days=min(days, (day - dt.date.min).days))


def _days_after(day: dt.date, days: int) -> dt.date:
    return day + dt.timedelta(days=min(days, (dt.date.max - day).days))
