"""A payment's calls reach the provider in the minor unit its authorization was sent in (payments.amount_minor,
minor_exponent), not recomputed from the decimal amount with today's currency table; an amount with more
decimals than the payment's currency has is refused, not rounded at the provider. Through the running payment
API, worker and sandbox (tests/integration/test_payment_api.py's way: PaymentService writes the rows)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_payment_api import api, captured_payment, engine, field_of, refund, sandbox_books

pytestmark = pytest.mark.usefixtures("stack")

__all__ = ["api", "engine"]  # the fixtures, used by name


async def _provider_holds(order_id: str) -> tuple[int, int, int]:
    [authorization] = (await sandbox_books(order_id))["authorizations"]
    return authorization["amount"], authorization["amount_captured"], authorization["amount_refunded"]


@pytest.fixture
async def bhd_before_ff6ffb9(engine: AsyncEngine, api: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    yield await captured_payment(engine, api, "10.50", "BHD", sent_as=(1050, 2))


async def test_an_authorization_sent_in_hundredths_is_captured_and_refunded_in_hundredths(
    api: httpx.AsyncClient, bhd_before_ff6ffb9: dict[str, Any]
) -> None:
    payment = bhd_before_ff6ffb9
    # Today's table would send 10500 thousandths: ten times what the provider holds, an over-capture.
    assert await _provider_holds(payment["order_id"]) == (1050, 1050, 0)
    answer = await refund(api, payment["id"], {"amount": "4.25", "reason": "returned"}, uuid.uuid4().hex)
    assert answer.status_code == 201, answer.text
    assert await _provider_holds(payment["order_id"]) == (1050, 1050, 425)
    whole = await refund(api, payment["id"], {"reason": "the rest"}, uuid.uuid4().hex)
    assert whole.status_code == 201, whole.text
    assert whole.json()["payment"]["status"] == "refunded"
    assert await _provider_holds(payment["order_id"]) == (1050, 1050, 1050)


async def test_a_new_dinar_payment_is_sent_in_thousandths(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    payment = await captured_payment(engine, api, "10.25", "KWD")
    assert await _provider_holds(payment["order_id"]) == (10250, 10250, 0)


async def test_a_refund_with_more_decimals_than_the_currency_has_is_refused(
    engine: AsyncEngine, api: httpx.AsyncClient
) -> None:
    payment = await captured_payment(engine, api, "500", "JPY")
    fraction = await refund(api, payment["id"], {"amount": "10.50", "reason": "goodwill"}, uuid.uuid4().hex)
    assert fraction.status_code == 422, fraction.text
    assert field_of(fraction) == {"amount"}
    assert "JPY" in fraction.text
    whole_yen = await refund(api, payment["id"], {"amount": "10", "reason": "goodwill"}, uuid.uuid4().hex)
    assert whole_yen.status_code == 201, whole_yen.text
    # Every amount in two decimals, as the columns hold them ("0" where nothing was counted, N 19:05).
    amounts = {op["counted_for_returns"] for op in whole_yen.json()["payment"]["operations"]}
    assert amounts == {"0.00"}, amounts
    assert await _provider_holds(payment["order_id"]) == (500, 500, 10)


async def test_a_fraction_of_a_yen_authorized_before_is_captured_as_the_integer_it_was_sent_as(
    engine: AsyncEngine, api: httpx.AsyncClient
) -> None:
    """An order priced 100.50 JPY before the catalog refused it: authorized as 101 (the adapter rounded half-up),
    so captured as 101, not refused for its decimals."""
    payment = await captured_payment(engine, api, "100.50", "JPY", sent_as=(101, 0))
    assert await _provider_holds(payment["order_id"]) == (101, 101, 0)


async def test_a_four_decimal_payment_is_sent_in_ten_thousandths(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    """CLF's minor unit is 10**-4 (payment_0006 lets minor_exponent hold 4): 1.25 CLF is 12500, not 125."""
    payment = await captured_payment(engine, api, "1.25", "CLF")
    assert await _provider_holds(payment["order_id"]) == (12500, 12500, 0)
    answer = await refund(api, payment["id"], {"amount": "0.50", "reason": "returned"}, uuid.uuid4().hex)
    assert answer.status_code == 201, answer.text
    assert await _provider_holds(payment["order_id"]) == (12500, 12500, 5000)
