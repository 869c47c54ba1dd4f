"""Pure parts of the consumer side: stats folding, version gaps, retry classification."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import asyncpg
import msgspec
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from apps.customer.models import CustomerStats
from apps.customer.projections import fold
from apps.customer.schemas import to_stats_out
from outbox.consumer import EventContext
from outbox.errors import RejectedEvent, RetryableError
from outbox.retry import backoff_delay, is_retryable
from tests.support.orders import order_cancelled, order_created


def ctx(version: int | None, previous: int | None) -> EventContext:
    return EventContext(
        event_id=uuid.uuid4(),
        aggregate_id=uuid.uuid4(),
        aggregate_type="order",
        event_type="order.created",
        event_version=version,
        schema_version=1,
        topic="commerce.order",
        partition=0,
        offset=0,
        timestamp=dt.datetime.now(dt.UTC),
        previous_version=previous,
    )


def test_fold_counts_orders_and_removes_cancelled_spend() -> None:
    first = order_created("c1", "10.00")
    deltas = fold([first, order_created("c1", "5.50"), order_cancelled(first), order_created("c2", "1.00")])
    c1 = deltas["c1", "USD"]
    assert (c1.orders, c1.cancelled, c1.spent) == (2, 1, Decimal("5.50"))
    assert deltas["c2", "USD"].spent == Decimal("1.00")
    assert c1.last_order_at is not None


def test_a_skipped_version_is_a_gap_and_an_old_one_is_stale() -> None:
    assert ctx(3, 1).is_gap and not ctx(3, 1).is_stale
    assert ctx(2, 1).is_gap is False
    assert ctx(1, 2).is_stale
    assert not ctx(1, None).is_gap and not ctx(1, None).is_stale


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_transient_errors_are_retried_and_data_errors_are_not() -> None:
    assert is_retryable(OperationalError("select 1", {}, Exception("connection refused")))
    assert is_retryable(DBAPIError("update", {}, _PgError("40P01")))  # deadlock
    assert is_retryable(DBAPIError("update", {}, _PgError("40001")))  # serialization failure
    assert is_retryable(RetryableError("later"))
    assert is_retryable(ConnectionRefusedError())
    assert not is_retryable(IntegrityError("insert", {}, _PgError("23505")))
    assert not is_retryable(DBAPIError("insert", {}, _PgError("22001")))  # value too long
    assert not is_retryable(RejectedEvent("no"))
    assert not is_retryable(ValueError("bug"))


# What SQLAlchemy's asyncpg dialect lets through unwrapped while it opens a connection, as seen against a
# server that is starting up, out of slots, or gone (reproduced with tests/support/pg_fault.py).
CONNECTION_PHASE_ERRORS = [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),
    ConnectionRefusedError(111, "Connect call failed"),
    ConnectionResetError(),
    OSError(113, "No route to host"),
    TimeoutError(),
]


@pytest.mark.parametrize("error", CONNECTION_PHASE_ERRORS, ids=lambda e: type(e).__name__)
def test_connection_phase_errors_are_retried_raw(error: Exception) -> None:
    assert is_retryable(error)


@pytest.mark.parametrize("error", CONNECTION_PHASE_ERRORS, ids=lambda e: type(e).__name__)
def test_connection_phase_errors_are_retried_wrapped_by_sqlalchemy(error: Exception) -> None:
    assert is_retryable(DBAPIError("select 1", {}, error))
    assert is_retryable(OperationalError("select 1", {}, error))
    assert is_retryable(InterfaceError("select 1", {}, error))


def test_an_invalidated_connection_is_retried_whatever_its_error() -> None:
    assert is_retryable(DBAPIError("select 1", {}, Exception("?"), connection_invalidated=True))


def test_a_transient_cause_makes_the_wrapper_transient() -> None:
    try:
        try:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        except Exception as exc:
            raise RuntimeError("could not check out a connection") from exc
    except RuntimeError as wrapped:
        assert is_retryable(wrapped)


def test_data_and_programming_errors_from_the_driver_are_not_retried() -> None:
    assert not is_retryable(asyncpg.exceptions.StringDataRightTruncationError("value too long"))
    assert not is_retryable(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not is_retryable(asyncpg.exceptions.DivisionByZeroError("division by zero"))


def test_a_schema_behind_the_code_is_waited_for_not_blamed_on_the_event() -> None:
    # A consumer deployed before its migration (or after a downgrade) would dead-letter every event.
    assert is_retryable(asyncpg.exceptions.UndefinedTableError("relation does not exist"))
    assert is_retryable(asyncpg.exceptions.UndefinedColumnError("column does not exist"))


def test_backoff_grows_and_is_capped() -> None:
    assert 0.1 <= backoff_delay(0, 30) <= 0.2
    assert backoff_delay(3, 30) <= 1.6
    assert all(15 <= backoff_delay(20, 30) <= 30 for _ in range(20))


def test_each_group_names_itself_to_the_broker() -> None:
    from outbox.kafka_client import consumer_config

    # The broker's request metrics and logs tell the groups apart only by client id (librdkafka's default is
    # "rdkafka" for every one of them).
    assert consumer_config("payment", "127.0.0.1:9092")["client.id"] == "payment"
    assert consumer_config("payment", "x", overrides={"client.id": "other"})["client.id"] == "other"


def test_fold_keeps_each_currency_apart() -> None:
    """100.00 USD and 10000 JPY are two sums, never 10100 (customer_0013); a cancellation comes off its own."""
    dollars = order_created("c1", "100.00")
    yen = msgspec.structs.replace(order_created("c1", "10000"), currency="JPY")
    deltas = fold([dollars, yen, order_cancelled(yen)])
    assert {key: (d.orders, d.cancelled, d.spent) for key, d in deltas.items()} == {
        ("c1", "USD"): (1, 0, Decimal("100.00")),
        ("c1", "JPY"): (1, 1, Decimal("0")),
    }


def _stats_row(
    currency: str, counts: tuple[int, int, int], spent: Decimal, refunded: Decimal, last: dt.datetime
) -> CustomerStats:
    """customer c1's row in ``currency``: (orders, cancelled, returns), the money, the last order."""
    row = CustomerStats(customer_id="c1", currency=currency, last_order_at=last)
    row.orders_count, row.cancelled_count, row.returns_count = counts
    row.total_spent, row.refunded_amount = spent, refunded
    return row


def test_stats_answer_counts_every_currency_and_lists_money_by_currency() -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        _stats_row("USD", (2, 1, 1), Decimal("90.00"), Decimal("10.00"), now),
        _stats_row("JPY", (1, 0, 0), Decimal("10000.00"), Decimal("0.00"), now - dt.timedelta(days=1)),
    ]
    out = to_stats_out(rows)
    assert (out.orders_count, out.cancelled_count, out.returns_count, out.last_order_at) == (3, 1, 1, now)
    assert [(c.currency, c.total_spent, c.refunded_amount) for c in out.by_currency] == [
        ("JPY", Decimal("10000.00"), Decimal("0.00")),
        ("USD", Decimal("90.00"), Decimal("10.00")),
    ]
    empty = to_stats_out([])
    assert (empty.orders_count, empty.last_order_at, empty.by_currency) == (0, None, [])
