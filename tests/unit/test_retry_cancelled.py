"""A statement PostgreSQL cancelled (57014) is retried by the consumer runtime, not blamed on the event."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from outbox.retry import is_retryable

pytestmark = pytest.mark.unit


def test_a_cancelled_statement_is_transient() -> None:
    # What SQLAlchemy's asyncpg dialect raised for `pg_cancel_backend` of a running statement (checked
    # on the stack's customer_db): a plain DBAPIError around asyncpg's QueryCanceledError.
    cancelled = asyncpg.exceptions.QueryCanceledError("canceling statement due to user request")
    assert cancelled.sqlstate == "57014"
    assert is_retryable(DBAPIError("select pg_sleep(3)", {}, cancelled))
    assert is_retryable(cancelled)
