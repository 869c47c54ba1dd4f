"""The returns API against the real stack: every rule of a return request and its moves, refused with the
status and the field that the contract names, and nothing written when refused.

One order is delivered through the real checkout, saga and payment (module fixture); tests that need
another state of the world (an old delivery, an expired request) set it in the returns database and put
it back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.db import fetch
from tests.support.http import api_client, create_customer, service_url
from tests.support.orders import eventually
from tests.support.returns import (
    act,
    delivered_order,
    get_return,
    line_id,
    order_reaches,
    request_return,
    returns_rows,
    stocked,
)

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def world() -> dict[str, Any]:
    """A delivered order of three lines (two, one and three units) and a confirmed, undelivered one."""
    async with api_client(timeout=30) as http:
        pair, last, three = await stocked("8.00", 5), await stocked("30.00", 1), await stocked("4.00", 6)
        placed = await delivered_order(http, [(pair, 2), (last, 1), (three, 3)])
        customer = await create_customer(http)
        direct = await http.post(
            f"{service_url('order')}/api/orders",
            json={"customer_id": customer["id"], "items": [{"product_id": three["id"], "quantity": 1}]},
        )
        assert direct.status_code == 201, direct.text
        await order_reaches(http, direct.json()["id"], "confirmed", "pending")
    return {"order": placed, "pair": pair, "last": last, "three": three, "undelivered": direct.json()}


def body(world: dict[str, Any], product: str, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    item = {"order_item_id": line_id(world["order"], world[product]), "quantity": quantity, "reason": "changed_mind"}
    return {"order_id": world["order"]["id"], "items": [item], **extra}


def refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert field in [e.get("key") for e in response.json().get("extra", [])], response.text


async def open_return(
    http: httpx.AsyncClient, world: dict[str, Any], product: str, quantity: int = 1
) -> dict[str, Any]:
    response = await request_return(http, body(world, product, quantity))
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"items": [{"order_item_id": 1, "quantity": 0, "reason": "other"}]}, "items[0].quantity"),
        ({"items": [{"order_item_id": 1, "quantity": 1, "reason": "because"}]}, "items[0].reason"),
        ({"items": [{"order_item_id": 0, "quantity": 1, "reason": "other"}]}, "items[0].order_item_id"),
        ({"items": []}, "items"),
        ({"order_id": "not-a-uuid"}, "order_id"),
        ({"return_type": "exchange"}, "return_type"),
        ({"refund_amount": "1.00"}, "refund_amount"),
    ],
)
async def test_malformed_requests_are_400_naming_the_field(
    http: httpx.AsyncClient, world: dict[str, Any], patch: dict[str, Any], field: str
) -> None:
    refused(await request_return(http, {**body(world, "pair"), **patch}), 400, field)


async def test_requests_the_order_cannot_honour_are_refused_and_write_nothing(
    http: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    order_id = world["order"]["id"]
    unknown_line = body(world, "pair")
    unknown_line["items"][0]["order_item_id"] = 2**53 - 1
    twice = body(world, "pair")
    twice["items"] = twice["items"] * 2
    undelivered = {
        "order_id": world["undelivered"]["id"],
        "items": [{"order_item_id": world["undelivered"]["items"][0]["id"], "quantity": 1, "reason": "other"}],
    }
    cases = [
        ({**body(world, "pair"), "order_id": str(uuid.uuid4())}, 422, "order_id"),
        (unknown_line, 422, "items[0].order_item_id"),
        (twice, 422, "items[1].order_item_id"),
        (body(world, "pair", 3), 422, "items[0].quantity"),
        (undelivered, 409, "order_id"),
    ]
    for request, status, field in cases:
        refused(await request_return(http, request), status, field)
    assert await returns_rows(order_id) == 0
    assert await returns_rows(world["undelivered"]["id"]) == 0


async def test_past_the_window_is_409(http: httpx.AsyncClient, world: dict[str, Any]) -> None:
    order_id = uuid.UUID(world["order"]["id"])
    query = "UPDATE order_snapshots SET delivered_at = delivered_at + make_interval(days => $2) WHERE order_id = $1"
    await eventually(lambda: _delivered_known(order_id), what="the delivery in the returns projection")
    await fetch("returns", query, order_id, -31)
    try:
        refused(await request_return(http, body(world, "pair")), 409, "order_id")
    finally:
        await fetch("returns", query, order_id, 31)
    assert await returns_rows(str(order_id)) == 0


async def _delivered_known(order_id: uuid.UUID) -> bool:
    rows = await fetch(
        "returns", "SELECT status_source, delivered_at FROM order_snapshots WHERE order_id = $1", order_id
    )
    return bool(rows) and rows[0]["status_source"] == "events" and rows[0]["delivered_at"] is not None


async def test_a_return_reads_back_lists_and_moves_only_along_its_flow(
    http: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    created = await open_return(http, world, "pair")
    return_id = created["id"]
    assert created["status"] == "requested" and created["customer_id"] == world["order"]["customer_id"]
    assert await get_return(http, return_id) == created
    base = f"{service_url('returns')}/api/returns"
    assert (await http.get(f"{base}/{uuid.uuid4()}")).status_code == 404
    assert (await act(http, str(uuid.uuid4()), "approve", {})).status_code == 404

    # Only an approved return is received; a requested one cannot complete or be received.
    item = created["items"][0]["id"]
    receipt = {"items": [{"return_item_id": item, "quantity_received": 1, "condition": "new"}]}
    refused(await act(http, return_id, "receive", receipt), 409, "status")
    assert (await act(http, return_id, "approve", {"refund_tax": False})).json()["status"] == "approved"
    refused(await act(http, return_id, "approve", {}), 409, "status")
    refused(await act(http, return_id, "reject", {"reason": "late"}), 409, "status")
    # What arrived must be the return's, once, at most what was asked back, and something.
    refused(
        await act(
            http, return_id, "receive", {"items": [{**receipt["items"][0], "return_item_id": str(uuid.uuid4())}]}
        ),
        422,
        "items[0].return_item_id",
    )
    refused(
        await act(http, return_id, "receive", {"items": [{**receipt["items"][0], "quantity_received": 2}]}),
        422,
        "items[0].quantity_received",
    )
    refused(await act(http, return_id, "receive", {"items": receipt["items"] * 2}), 422, "items[1].return_item_id")
    refused(
        await act(http, return_id, "receive", {"items": [{**receipt["items"][0], "quantity_received": 0}]}),
        422,
        "items",
    )
    assert (await get_return(http, return_id))["status"] == "approved"

    second = await open_return(http, world, "pair")  # the order's other unit
    refused(await request_return(http, body(world, "pair")), 409, "items[0].quantity")  # none left
    page = await http.get(base, params={"order_id": world["order"]["id"], "limit": 1})
    assert page.status_code == 200 and [r["id"] for r in page.json()["items"]] == [second["id"]]
    rest = await http.get(base, params={"order_id": world["order"]["id"], "cursor": page.json()["next_cursor"]})
    assert return_id in [r["id"] for r in rest.json()["items"]]
    mine = await http.get(base, params={"customer_id": world["order"]["customer_id"], "limit": 100})
    assert {return_id, second["id"]} <= {r["id"] for r in mine.json()["items"]}
    refused(await http.get(base, params={"cursor": "nope"}), 400, "cursor")


async def test_two_requests_for_the_last_unit_one_wins_and_a_rejected_return_frees_it(
    http: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    first, second = await asyncio.gather(*(request_return(http, body(world, "last")) for _ in range(2)))
    assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)
    winner = first if first.status_code == 201 else second
    assert winner.json()["rejection_reason"] is None
    rejected = (await act(http, winner.json()["id"], "reject", {"reason": "outside policy"})).json()
    assert (rejected["status"], rejected["rejection_reason"]) == ("rejected", "outside policy")
    again = await open_return(http, world, "last")
    assert again["refund_shipping"] is False


async def test_a_request_past_its_expiry_expires_and_frees_its_units(
    http: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    swept, touched = await open_return(http, world, "three"), await open_return(http, world, "three")
    past = "UPDATE return_requests SET expires_at = now() - interval '1 second' WHERE id = $1"
    # Moving an expired request is refused, and it is expired then and there.
    await fetch("returns", past, uuid.UUID(touched["id"]))
    refused(await act(http, touched["id"], "approve", {}), 409, "status")
    assert (await get_return(http, touched["id"]))["status"] == "expired"
    # One nobody touches is expired by the sweeper.
    await fetch("returns", past, uuid.UUID(swept["id"]))

    async def swept_away() -> bool:
        return bool((await get_return(http, swept["id"]))["status"] == "expired")

    await eventually(swept_away, within=30, what="the sweeper expired the request")
    events = await fetch(
        "returns",
        "SELECT count(*) AS n FROM event_store WHERE event_type = 'return.expired' AND aggregate_id = ANY($1::uuid[])",
        [uuid.UUID(swept["id"]), uuid.UUID(touched["id"])],
    )
    assert events[0]["n"] == 2
    # Their units may be returned again: all three at once.
    await open_return(http, world, "three", 3)
