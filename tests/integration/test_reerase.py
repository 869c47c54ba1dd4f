"""After a restore to a moment before an erasure, `python -m apps.customer.reerase --since T` finds the
erasure in commerce.customer and erases the person again (apps/customer/reerase.py); ``--announce``
publishes customer.erased again for someone still erased."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from apps.customer.reerase import erased_since, reerase
from tests.support.db import fetch
from tests.support.http import api_client, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")


async def erasures(customer_id: str) -> int:
    """customer.erased events of the customer in the outbox."""
    rows = await fetch(
        "customer",
        "SELECT count(*) AS n FROM event_store WHERE aggregate_id = $1 AND event_type = 'customer.erased'",
        uuid.UUID(customer_id),
    )
    return int(rows[0]["n"])


async def test_a_person_brought_back_by_a_restore_is_erased_again_from_the_erasure_in_kafka() -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    tag = uuid.uuid4().hex[:12]
    body = {"email": f"back-{tag}@example.com", "first_name": f"Back{tag}", "last_name": "Again"}
    async with api_client("staff") as http:
        created = await http.post(f"{service_url('customer')}/api/customers", json=body)
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        erased = await http.post(f"{service_url('customer')}/api/customers/{customer_id}/erase")
        assert erased.status_code == 202, erased.text

        async def published() -> bool:
            return uuid.UUID(customer_id) in await asyncio.to_thread(erased_since, since)

        await eventually(published, within=30, what="customer.erased on commerce.customer")
        # What a restore from before the erasure looks like on the row: the person again, active.
        await fetch(
            "customer",
            "UPDATE customers SET status = 'active', deleted_at = NULL, first_name = $2, last_name = 'Again' "
            "WHERE id = $1",
            uuid.UUID(customer_id),
            body["first_name"],
        )
        assert (await http.get(f"{service_url('customer')}/api/customers/{customer_id}")).status_code == 200

        assert await reerase(await asyncio.to_thread(erased_since, since)) >= 1

        assert (await http.get(f"{service_url('customer')}/api/customers/{customer_id}")).status_code == 404
    [row] = await fetch(
        "customer", "SELECT status, first_name, last_name FROM customers WHERE id = $1", uuid.UUID(customer_id)
    )
    assert tuple(row) == ("erased", "Deleted", "User")
    assert await erasures(customer_id) == 2  # the other services hear of it again (their handlers are idempotent)
    assert await reerase([uuid.UUID(customer_id)]) == 1 and await erasures(customer_id) == 2  # still erased
    assert await reerase([uuid.UUID(customer_id)], announce=True) == 1 and await erasures(customer_id) == 3
    logged = await fetch(
        "customer",
        "SELECT count(*) AS n FROM data_access_log WHERE record_id = $1 AND user_id = 'service:reerase'",
        customer_id,
    )
    assert logged[0]["n"] == 1
