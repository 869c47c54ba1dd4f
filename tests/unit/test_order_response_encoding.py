"""POST /api/orders encodes its answer itself (apps/order/controllers.py): the bytes Litestar would send."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from litestar.serialization import encode_json

from apps.common.addresses import Address
from apps.order.controllers import _ENCODER
from apps.order.schemas import OrderLineOut, OrderOut

pytestmark = pytest.mark.unit


def _order(*, addressed: bool, cancelled: bool = False) -> OrderOut:
    now = dt.datetime(2026, 11, 27, 13, 0, 0, 123456, tzinfo=dt.UTC)
    address = Address(address_line1="1 Main St", city="Springfield", country="US", postal_code="12345")
    line = OrderLineOut(
        id=7,
        product_id=uuid.uuid4(),
        sku="SKU-1",
        name="A thing",
        quantity=2,
        unit_price=Decimal("4.50"),
        total_price=Decimal("9.00"),
    )
    return OrderOut(
        id=uuid.uuid4(),
        order_number="ORD-20261127-ABCDEF0123",
        customer_id=str(uuid.uuid4()),
        status="cancelled" if cancelled else "pending",
        status_reason="out_of_stock" if cancelled else None,
        status_changed_at=now,
        payment_status="pending",
        waiting_on=None if cancelled else "reservation",
        waiting_until=None if cancelled else now + dt.timedelta(seconds=120),
        currency="USD",
        subtotal=Decimal("9.00"),
        tax_amount=Decimal("0.00"),
        shipping_amount=Decimal("0.00"),
        discount_amount=Decimal("0"),
        total_amount=Decimal("9.00"),
        items=[line],
        shipping_address=address if addressed else None,
        billing_address=address if addressed else None,
        notes="leave at the door" if addressed else None,
        created_at=now,
        updated_at=now,
        cancelled_at=now if cancelled else None,
    )


@pytest.mark.parametrize(("addressed", "cancelled"), [(True, False), (False, False), (False, True)])
def test_the_placement_answer_is_encoded_as_litestar_encodes_it(addressed: bool, cancelled: bool) -> None:
    out = _order(addressed=addressed, cancelled=cancelled)
    assert _ENCODER.encode(out) == encode_json(out)
