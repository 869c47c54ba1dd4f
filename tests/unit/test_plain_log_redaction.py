"""Plain-text logs of consumers, sweepers and jobs go through the services' redaction (issue 14)."""

from __future__ import annotations

import io
import logging
import sys
import threading

import pytest
from sqlalchemy.exc import IntegrityError

from outbox.redaction import RedactingFormatter, configure_logging

_PERSONAL = ("ada@example.com", "+49 151 2345678", "1 Main St")


def _sqlalchemy_error() -> IntegrityError:
    """The error SQLAlchemy raises for a failed statement: its text carries the bound values."""
    return IntegrityError(
        "INSERT INTO customers (email, phone, street) VALUES ($1, $2, $3)",
        ("ada@example.com", "+49 151 2345678", "1 Main St"),
        Exception(
            "duplicate key value violates unique constraint\nDETAIL:  Key (email)=(ada@example.com) already exists."
        ),
    )


def _emit(logger: logging.Logger, formatter: logging.Formatter) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        error = _sqlalchemy_error()
        logger.error("group stats: order.created rejected: %r", error)
        try:
            raise error
        except IntegrityError:
            logger.exception("batch failed")
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_the_message_its_arguments_and_the_traceback_are_redacted() -> None:
    text = _emit(logging.getLogger("test.plain.redaction"), RedactingFormatter("%(levelname)s %(name)s %(message)s"))
    assert "ERROR test.plain.redaction group stats: order.created rejected:" in text
    assert "[parameters: <redacted>]" in text and "Traceback" in text and "INSERT INTO customers" in text
    for value in _PERSONAL:
        assert value not in text


def test_unredacted_the_same_lines_would_leak() -> None:
    # The test above means something only if a plain formatter shows the values.
    text = _emit(logging.getLogger("test.plain.raw"), logging.Formatter("%(message)s"))
    assert all(value in text for value in _PERSONAL)


def test_configure_logging_redacts_every_root_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    level = root.level
    try:
        configure_logging()
        assert root.handlers and all(isinstance(h.formatter, RedactingFormatter) for h in root.handlers)
    finally:
        root.setLevel(level)


def test_an_exception_nobody_caught_is_logged_redacted_in_the_main_thread_and_in_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python would print the traceback to stderr as it is: a consumer that exits on a database error.
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    level = root.level
    try:
        configure_logging()
        error = _sqlalchemy_error()
        sys.excepthook(type(error), error, error.__traceback__)
        thread = threading.Thread(target=_raise, args=(error,), name="prefetch")
        thread.start()
        thread.join()
    finally:
        root.setLevel(level)
    text = out.getvalue()
    assert "CRITICAL root uncaught exception" in text and "uncaught exception in thread prefetch" in text
    assert text.count("[parameters: <redacted>]") == 2
    for value in _PERSONAL:
        assert value not in text


def _raise(error: Exception) -> None:
    raise error
