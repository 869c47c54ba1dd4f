"""Nothing that identifies a person in any log line (issue 14), for the services and our other processes.

``redact`` blanks what slips into a line through text we do not write ourselves (exception messages,
tracebacks, a library's details): query-string values, email addresses (also URL-encoded), phone numbers,
bearer tokens and JWTs, SQLAlchemy's ``[parameters: ...]`` and PostgreSQL's ``Key (...)=(...)`` details.
The services' JSON logs (apps/common/logs.py) pass every field through it; consumers, sweepers, jobs
and exporters, which log plain text, set up their logging with ``configure_logging`` so that every line,
traceback included, passes through it too.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["REDACTED", "RedactingFormatter", "configure_logging", "redact"]

REDACTED: Final = "<redacted>"
# Each (pattern, replacement); a line is only rewritten when _SUSPECT finds something to look at.
_REDACTIONS: Final = (
    # SQLAlchemy's statement errors end with the bound values, then a "Background on this error" note.
    (re.compile(r"\[parameters: .*?(?=\n\(Background on this error|\Z)", re.DOTALL), f"[parameters: {REDACTED}]"),
    (re.compile(r"(Key \([^)]*\))=\(.*?\)(?= already exists| is not present|\.|$)", re.MULTILINE), rf"\1=({REDACTED})"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w~+/.=-]{16,}"), rf"\1 {REDACTED}"),
    (re.compile(r"\beyJ[\w-]*\.[\w-]*\.[\w-]*"), REDACTED),
    (re.compile(r"([?&][^=&\s\"'#]+)=[^&\s\"'#]*"), rf"\1={REDACTED}"),
    (re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"(?<![\w+])\+\d[\d ().-]{6,}\d"), "<phone>"),
)
_SUSPECT: Final = re.compile(r"@|%40|[?&][^=&\s]+=|\+\d|(?i:bearer|basic)\s|eyJ|\[parameters: |Key \(")

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def redact(text: str) -> str:
    """``text`` with query values, emails, phones, tokens and SQL parameter values blanked out."""
    if not _SUSPECT.search(text):
        return text
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A plain-text formatter whose whole output (message, arguments, traceback) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: int | str = logging.INFO, fmt: str = PLAIN_FORMAT) -> None:
    """``logging.basicConfig`` for a plain-text process, every line through ``redact``."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(fmt))
