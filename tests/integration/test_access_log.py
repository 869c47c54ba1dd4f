"""data_access_log (issue 14; apps/common/access_log.py) against the running services: who read or changed a
person's records, written with the change (a failed change leaves none) or before the answer of a read, and
``GET /api/customers/{id}/access-log`` gathering every service's rows about that person."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.db import connect, outbox_fails_at_commit
from tests.support.http import api_client, create_customer, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")

CUSTOMERS = f"{service_url('customer')}/api/customers"
ORDERS = f"{service_url('order')}/api/orders"


async def rows(service: str, customer_id: str) -> list[tuple[str, str, str, str | None]]:
    """(user_id, table_name, operation, record_id) about one person in one service, oldest first."""
    conn = await connect(service)
    try:
        found = await conn.fetch(
            "SELECT user_id, table_name, operation, record_id FROM data_access_log WHERE customer_id = $1 "
            "ORDER BY accessed_at, id",
            customer_id,
        )
    finally:
        await conn.close()
    return [(r["user_id"], r["table_name"], r["operation"], r["record_id"]) for r in found]


async def place_order(customer_id: str) -> dict[str, Any]:
    product = await create_product()
    body = {"customer_id": customer_id, "items": [{"product_id": product["id"], "quantity": 1}]}
    async with api_client("customer", customer_id=customer_id) as http:
        answer = await http.post(ORDERS, json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def test_reads_and_changes_are_logged_with_who_did_them() -> None:
    customer = await create_customer()  # by an admin
    cid = customer["id"]
    async with api_client("staff") as staff:
        assert (await staff.get(f"{CUSTOMERS}/{cid}")).status_code == 200
        address = {"type": "shipping", "address_line1": "1 Main St", "city": "Berlin", "country": "DE"}
        async with api_client("customer", customer_id=cid) as own:
            assert (await own.patch(f"{CUSTOMERS}/{cid}", json={"last_name": "Changed"})).status_code == 200
            added = await own.post(f"{CUSTOMERS}/{cid}/addresses", json=address)
            assert added.status_code == 201, added.text
        assert (await staff.get(f"{CUSTOMERS}/{cid}/addresses")).status_code == 200

    logged = await rows("customer", cid)
    assert logged[0][1:3] == ("customers", "INSERT") and logged[0][0].startswith("admin:")
    assert ("customers", "SELECT") in [r[1:3] for r in logged if r[0].startswith("staff:")]
    assert (f"customer:{cid}", "customers", "UPDATE", cid) in logged
    assert (f"customer:{cid}", "customer_addresses", "INSERT", str(added.json()["id"])) in logged
    assert all("@" not in r[0] for r in logged)  # never an email as the actor


async def test_a_failed_change_leaves_no_row() -> None:
    first, second = await create_customer(), await create_customer()
    cid = second["id"]
    async with api_client("customer", customer_id=cid) as own:
        clash = await own.patch(f"{CUSTOMERS}/{cid}", json={"email": first["email"]})
        assert clash.status_code == 409, clash.text  # refused before the row was written
        # Refused at COMMIT, after the access-log INSERT ran: the row must go with the change.
        conn = await connect("customer")
        try:
            refuse = f"NEW.aggregate_id = '{cid}'::uuid AND NEW.event_type = 'customer.updated'"
            async with outbox_fails_at_commit(conn, "", "", condition=refuse):
                failed = await own.patch(f"{CUSTOMERS}/{cid}", json={"last_name": "Never"})
        finally:
            await conn.close()
    assert failed.status_code >= 500, failed.text
    assert [r for r in await rows("customer", cid) if r[2] == "UPDATE"] == []


async def test_order_reads_and_placement_are_logged_in_the_order_service() -> None:
    cid = (await create_customer())["id"]
    placed = await place_order(cid)
    async with api_client("staff") as staff:
        assert (await staff.get(f"{ORDERS}/{placed['id']}")).status_code == 200
        listing = await staff.get(ORDERS, params={"customer_id": cid})
        assert listing.status_code == 200
    async with api_client("customer", customer_id=uuid.uuid4()) as stranger:
        assert (await stranger.get(f"{ORDERS}/{placed['id']}")).status_code == 404  # saw nothing: no row

    logged = await rows("order", cid)
    assert (f"customer:{cid}", "orders", "INSERT", placed["id"]) == logged[0]
    staff_reads = [r for r in logged if r[0].startswith("staff:") and r[2] == "SELECT"]
    assert len(staff_reads) == 2 and {r[3] for r in staff_reads} == {placed["id"]}
    assert all(not r[0].startswith("customer:") or r[0] == f"customer:{cid}" for r in logged)


async def _page(http: httpx.AsyncClient, cid: str, **params: Any) -> httpx.Response:
    return await http.get(f"{CUSTOMERS}/{cid}/access-log", params=params)


async def test_the_access_log_endpoint_gathers_every_service_newest_first() -> None:
    cid = (await create_customer())["id"]
    placed = await place_order(cid)
    async with api_client("staff") as staff:
        await staff.get(f"{CUSTOMERS}/{cid}")
        whole = await _page(staff, cid)
        assert whole.status_code == 200, whole.text
        entries = whole.json()["items"]
        assert {(e["service"], e["table_name"], e["operation"]) for e in entries} >= {
            ("customer", "customers", "INSERT"),
            ("customer", "customers", "SELECT"),
            ("order", "orders", "INSERT"),
        }
        assert any(e["record_id"] == placed["id"] for e in entries)
        stamps = [(e["accessed_at"], e["id"]) for e in entries]
        assert stamps == sorted(stamps, reverse=True)

        first = await _page(staff, cid, limit=2)
        second = await _page(staff, cid, limit=2, cursor=first.json()["next_cursor"])
        # The largest page the schema allows (the peers are asked for no more than they accept either), and a
        # walk one row at a time that must meet every row, whichever service holds the next one.
        largest = await _page(staff, cid, limit=200)
        assert largest.status_code == 200, largest.text
        walked: list[str] = []
        cursor: str | None = None
        while len(walked) <= len(entries):
            step = (await _page(staff, cid, limit=1, **({"cursor": cursor} if cursor else {}))).json()
            walked += [e["id"] for e in step["items"]]
            if (cursor := step["next_cursor"]) is None:
                break
    paged = [e["id"] for e in first.json()["items"] + second.json()["items"]]
    assert paged == [e["id"] for e in entries[:4]]
    assert [e["id"] for e in largest.json()["items"]] == [e["id"] for e in entries]
    assert walked == [e["id"] for e in entries]

    async with api_client("customer", customer_id=cid) as own:
        assert (await _page(own, cid)).status_code == 200
    async with api_client("customer", customer_id=uuid.uuid4()) as stranger:
        assert (await _page(stranger, cid)).status_code == 404
