"""The correlation id kept with work a poller carries out later (outbox.correlation.resumed): the payment
worker runs a pending operation under the id of whoever asked for it, the order sweeper a timed-out saga under
its order's; and the order saga's lines per step taken, which name each order with its id."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import pytest

from apps.order import saga_rows
from outbox.correlation import correlation_id, current_uuid, resumed
from outbox.redaction import RedactingFormatter
from tests.support.orders import order_created

pytestmark = pytest.mark.unit

R1, R2 = str(uuid.uuid4()), str(uuid.uuid4())


def test_a_kept_id_is_current_while_the_work_runs_and_gone_after() -> None:
    seen = []
    with resumed(uuid.UUID(R1)):
        seen.append(correlation_id.get())
        assert current_uuid() == uuid.UUID(R1)  # what a pending operation written now keeps
    with resumed(R2):
        seen.append(correlation_id.get())
    with resumed(None):
        seen.append(correlation_id.get())
    assert seen == [R1, R2, None]
    assert correlation_id.get() is None
    assert current_uuid() is None


def test_a_kept_id_is_reset_when_the_work_fails() -> None:
    with pytest.raises(RuntimeError), resumed(R1):
        raise RuntimeError("the provider did not answer")
    assert correlation_id.get() is None


def test_a_current_id_stays_current_over_a_kept_one() -> None:
    """The refund endpoint carries out its own operation inline: its lines and event keep the request's id."""
    token = correlation_id.set(R1)
    try:
        with resumed(R2):
            assert correlation_id.get() == R1
        assert correlation_id.get() == R1
    finally:
        correlation_id.reset(token)


@pytest.fixture
def saga_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logger = logging.getLogger("apps.order.saga")
    logger.addHandler(handler)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def test_one_orders_step_is_a_line_with_its_id_as_the_warehouses(saga_lines: io.StringIO) -> None:
    order = uuid.uuid4()
    saga_rows.log_steps([(order, order_created("c", "1.00"))], [R1])
    assert saga_lines.getvalue().splitlines() == [f"order {order}: order.created request_id={R1}"]


def test_a_rounds_steps_share_a_line_per_hundred_orders_each_with_its_id(
    saga_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(saga_rows, "LINE_ORDERS", 2)
    orders = [uuid.uuid4() for _ in range(3)]
    event = order_created("c", "1.00")
    saga_rows.log_steps([(order, event) for order in orders], [R1, None, R2])
    assert saga_lines.getvalue().splitlines() == [
        f"order {orders[0]}: order.created request_id={R1}; order {orders[1]}: order.created",
        f"order {orders[2]}: order.created request_id={R2}",
    ]
