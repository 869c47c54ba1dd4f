"""Review (session 29, W) of 4f075fe: an amount spelt NaN is poison, however the JSON spells it.

decode_payload walks the decoded payload for a NaN Decimal only when the raw bytes contain "nan" (any
case). JSON may spell any character of a string as a \\u escape, and msgspec decodes "\\u004eaN" to "NaN",
which Decimal reads as NaN: such a record skips the walk and its NaN is applied (numeric(20,2) stores NaN,
and NaN + x = NaN), spoiling the sums for good as before the fix. Kafka here has no ACLs (README, Operator
surfaces): anyone who reaches it can produce such a record."""

from __future__ import annotations

import json
import uuid
from typing import cast

import pytest

from apps.customer.consumers import group as customer_stats
from apps.order.events import OrderCreated
from outbox.decoding import parse
from outbox.events import payload_as_dict
from tests.support.orders import order_created
from tests.unit.test_poison_decoding import _headers, _record


@pytest.mark.parametrize("spelling", ["\\u004eaN", "N\\u0061N", "\\u006e\\u0061\\u006e"])
def test_an_amount_spelling_nan_with_json_escapes_is_poison(spelling: str) -> None:
    payload = payload_as_dict(order_created(str(uuid.uuid4())))
    payload["total_amount"] = "SPOILT"
    raw = json.dumps(payload).replace('"SPOILT"', f'"{spelling}"').encode()
    assert b"nan" not in raw.lower()  # the bytes never spell it
    batch = parse(customer_stats, [_record(_headers(uuid.uuid4()), raw)])
    assert [str(cast(OrderCreated, p.event).total_amount) for p in batch.parsed] == []  # not applied as NaN
    assert len(batch.poison) == 1 and "is not a number" in batch.poison[0].error
