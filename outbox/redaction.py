"""Nothing that identifies a person in any log line (issue 14), for the services and our other processes.

``redact`` blanks what slips into a line through text we do not write ourselves (exception messages,
tracebacks, a library's details): query-string values, email addresses (also URL-encoded), phone numbers,
bearer tokens and JWTs, SQLAlchemy's ``[parameters: ...]``, and the values a database error names: the row
of a NOT NULL or CHECK violation ("Failing row contains (...)"), the key of a unique, exclusion or foreign
key violation ("Key (...)=(...)"), an argument asyncpg could not encode, a value PostgreSQL could not read.
The services' JSON logs (apps/common/logs.py) pass every field through it; consumers, sweepers, jobs
and exporters, which log plain text, set up their logging with ``configure_logging`` so that every line,
traceback included (an uncaught one too), passes through it; a dead letter's error is redacted as well
(outbox.decoding). PostgreSQL's own log gets no DETAIL from the service roles (infra/postgres.py).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from types import TracebackType
from typing import Final

from outbox.correlation import correlation_id

__all__ = ["REDACTED", "RedactingFormatter", "configure_logging", "redact"]

REDACTED: Final = "<redacted>"
# Where PostgreSQL's text for a value ends: the end of its line (a real newline, or "\n" as a "%r" log line
# escapes it), of a quoted repr, or of the text (a log field cut short).
_VALUE_END: Final = r"(?=\n|\\n|['\"]|\Z)"
# A key's columns or expression, up to two nested levels: "Key (lower((name)::text))".
_KEY_COLUMNS: Final = r"\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)"
# Each (pattern, replacement); a line is only rewritten when _SUSPECT finds something to look at.
_REDACTIONS: Final = (
    # SQLAlchemy's statement errors end with the bound values, then a "Background on this error" note.
    (re.compile(r"\[parameters: .*?(?=\n\(Background on this error|\Z)", re.DOTALL), f"[parameters: {REDACTED}]"),
    # A NOT NULL or CHECK violation's DETAIL shows the whole row, any of its values on several lines.
    (re.compile(rf"(Failing row contains )\(.*?(?:\)(?=\.{_VALUE_END})|\Z)", re.DOTALL), rf"\1({REDACTED})"),
    # Unique, exclusion and foreign-key violations: "Key (email)=(...) already exists", "... conflicts with
    # existing key (room)=(...)", "... is not present in table", "... is still referenced", "... is duplicated".
    (
        re.compile(
            rf"((?i:key) {_KEY_COLUMNS})=\(.*?(?:\)(?= already exists| is not present| is still referenced"
            rf"| is duplicated| conflicts with|\.?{_VALUE_END})|\Z)",
            re.DOTALL,
        ),
        rf"\1=({REDACTED})",
    ),
    # Values in the message itself: asyncpg's encoding of an argument, PostgreSQL's input errors (the rest
    # of the line is the value, or says it again).
    (
        re.compile(
            r"((?:invalid input for query argument \$\d+|invalid input (?:syntax|value) for [^:\n]*"
            r"|malformed \w+ literal|field value out of range): ).*"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r'((?:value|Token) )".*?"(?= is out of range| is invalid)', re.DOTALL), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w~+/.=-]{16,}"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[\w-]*\.[\w-]*\.[\w-]*"), REDACTED),
    (re.compile(r"([?&][^=&\s\"'#]+)=[^&\s\"'#]*"), rf"\1={REDACTED}"),
    (re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"(?<![\w+])\+\d[\d ().-]{6,}\d"), "<phone>"),
)
_SUSPECT: Final = re.compile(
    r"@|%40|[?&][^=&\s]+=|\+\d|(?i:bearer|basic)\s|eyJ|\[parameters: |(?i:key) \(|Failing row|invalid input"
    r"|literal: |out of range|Token \""
)

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def redact(text: str) -> str:
    """``text`` with query values, emails, phones, tokens and SQL parameter values blanked out."""
    if not _SUSPECT.search(text):
        return text
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A plain-text formatter whose whole output (message, arguments, traceback) is redacted; a line written
    while a request or a consumed event is handled ends with its ``request_id=`` (outbox/correlation.py;
    a record's own ``request_id`` extra first: a batch handler's line about one of its events)."""

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        request_id = record.__dict__.get("request_id") or correlation_id.get()
        if request_id is None:
            return line
        first, newline, rest = line.partition("\n")  # on the message's line, before a traceback
        return f"{first} request_id={request_id}{newline}{rest}"


def configure_logging(level: int | str = logging.INFO, fmt: str = PLAIN_FORMAT) -> None:
    """``logging.basicConfig`` for a plain-text process, every line through ``redact``; so is the traceback
    of an exception nobody caught (in the main thread or another), which Python would print as it is."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(fmt))
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger().critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    thread = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    logging.getLogger().critical("uncaught exception in thread %s", thread, exc_info=exc_info)
