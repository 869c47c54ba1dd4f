"""What README.md and docs/operations.md say about the APIs, tried on the running stack as a client would.

Each claim here was found missing or wrong by walking the docs (session 28) and then written down; these
tests keep the words and the services together. Every id is new on each run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; types-PyYAML is not locked

from apps.common.topology import connect_url
from infra import connectors, monitoring
from infra.paths import REPO
from tests.support.http import api_client, auth_headers, create_customer, create_product, service_url, set_stock
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

US = {"address_line1": "1 Main St", "city": "Springfield", "country": "US"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:  # admin unless a request says otherwise
        yield client


@pytest.fixture
async def anyone() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:  # no token: a guest
        yield client


def as_customer(customer: dict[str, Any]) -> dict[str, str]:
    return auth_headers("customer", customer_id=customer["id"])


async def guest_checkout(
    anyone: httpx.AsyncClient, product: dict[str, Any], country: str
) -> tuple[httpx.Response, dict[str, str]]:
    """A guest cart with one unit, then POST /api/checkout to ``country``; the answer and the guest's header."""
    cart = (await anyone.post(f"{service_url('checkout')}/api/carts")).json()
    guest = {"X-Guest-Token": cart["guest_token"]}
    added = await anyone.post(
        f"{service_url('checkout')}/api/carts/{cart['id']}/items",
        json={"product_id": product["id"], "quantity": 1},
        headers=guest,
    )
    assert added.status_code == 200, added.text
    body = {
        "cart_id": cart["id"],
        "shipping_address": {**US, "country": country},
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa"},
    }
    return await anyone.post(f"{service_url('checkout')}/api/checkout", json=body, headers=guest), guest


async def test_checkout_ships_only_where_a_tax_rate_is_and_a_guests_order_is_for_staff(
    http: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    product = await create_product("6.00")
    await set_stock(product["id"], 5)

    japan, _ = await guest_checkout(anyone, product, "JP")
    assert japan.status_code == 422, japan.text
    assert japan.json()["extra"][0] == {
        "message": "we do not ship to JP",
        "key": "shipping_address.country",
        "source": "body",
    }

    france, guest = await guest_checkout(anyone, product, "FR")
    assert france.status_code == 201, france.text
    session = france.json()
    assert "session_token" in session  # the seed's column: answered, read by nothing (README)
    done = await anyone.post(
        f"{service_url('checkout')}/api/checkout/{session['id']}/complete",
        headers={**guest, "Idempotency-Key": f"walk-{uuid.uuid4()}"},
    )
    assert done.status_code == 202, done.text
    order_url = f"{service_url('order')}/api/orders/{done.json()['order_id']}"

    async def created() -> bool:
        return (await http.get(order_url)).status_code == 200

    await eventually(created, within=60, what="the saga created the guest's order")
    staff = await http.get(order_url, headers=auth_headers("staff"))
    assert staff.status_code == 200 and staff.json()["customer_id"] == session["customer_id"]
    # The guest holds only its cart's token, which the order API does not take: staff read the order.
    assert (await anyone.get(order_url, headers=guest)).status_code == 401


async def test_an_order_placed_by_api_charges_no_tax_or_shipping_and_one_currency(http: httpx.AsyncClient) -> None:
    customer = await create_customer()
    dollars, euros = await create_product("12.50"), await create_product("9.99", "EUR")
    await set_stock(dollars["id"], 5)
    url = f"{service_url('order')}/api/orders"
    line = {"product_id": dollars["id"], "quantity": 2}

    placed = await http.post(
        url,
        json={"customer_id": customer["id"], "items": [line], "shipping_address": US},
        headers=as_customer(customer),
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert (order["subtotal"], order["tax_amount"], order["shipping_amount"], order["total_amount"]) == (
        "25.00",
        "0.00",
        "0.00",
        "25.00",
    )

    mixed = await http.post(
        url,
        json={"customer_id": customer["id"], "items": [line, {"product_id": euros["id"], "quantity": 1}]},
        headers=as_customer(customer),
    )
    assert mixed.status_code == 422, mixed.text  # each line valid alone: inconsistent together, as in a cart
    assert mixed.json()["extra"][0]["key"] == "items[1].product_id"


async def test_a_line_withdrawn_after_it_was_added_is_reported_on_the_checkouts_cart_id(
    http: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    product = await create_product("4.00")
    await set_stock(product["id"], 5)
    cart = (await anyone.post(f"{service_url('checkout')}/api/carts")).json()
    guest = {"X-Guest-Token": cart["guest_token"]}
    await anyone.post(
        f"{service_url('checkout')}/api/carts/{cart['id']}/items",
        json={"product_id": product["id"], "quantity": 1},
        headers=guest,
    )
    withdrawn = await http.patch(f"{service_url('catalog')}/api/products/{product['id']}", json={"status": "inactive"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "inactive"
    body = {
        "cart_id": cart["id"],
        "shipping_address": US,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa"},
    }

    response = await anyone.post(f"{service_url('checkout')}/api/checkout", json=body, headers=guest)

    assert response.status_code == 422, response.text
    problem = response.json()["extra"][0]
    assert problem["key"] == "cart_id"  # a field of this body; the message names the cart's line
    assert f"items[0] (product {product['id']})" in problem["message"]
    # An inactive product stays readable (README, catalog).
    assert (await anyone.get(f"{service_url('catalog')}/api/products/{product['id']}")).status_code == 200


async def test_stock_is_set_not_added_and_a_product_never_stocked_reads_zero(http: httpx.AsyncClient) -> None:
    product = await create_product("3.00")
    url = f"{service_url('warehouse')}/api/inventory/{product['id']}"

    never = await http.get(url)
    assert never.status_code == 200 and never.json()["on_hand"] == 0 and never.json()["warehouses"] == []
    await set_stock(product["id"], 10)
    after = await set_stock(product["id"], 4)
    assert (after["on_hand"], after["available"]) == (4, 4)


async def test_analytics_ranges_as_documented(http: httpx.AsyncClient) -> None:
    url = f"{service_url('analytics')}/api/analytics"
    today = dt.datetime.now(dt.UTC).date()
    reversed_range = await http.get(
        f"{url}/sales/daily", params={"from": today.isoformat(), "to": (today - dt.timedelta(days=1)).isoformat()}
    )
    assert reversed_range.status_code == 200 and reversed_range.json() == []
    never_sold = await http.get(f"{url}/products/{uuid.uuid4()}")
    assert never_sold.status_code == 200 and never_sold.json() == []


async def test_an_erased_persons_token_still_reads_their_orders_and_nothing_personal_is_in_them(
    http: httpx.AsyncClient,
) -> None:
    customer = await create_customer()
    product = await create_product("2.00")
    await set_stock(product["id"], 5)
    me = as_customer(customer)
    placed = await http.post(
        f"{service_url('order')}/api/orders",
        json={
            "customer_id": customer["id"],
            "items": [{"product_id": product["id"], "quantity": 1}],
            "shipping_address": US,
        },
        headers=me,
    )
    assert placed.status_code == 201, placed.text
    order_url = f"{service_url('order')}/api/orders/{placed.json()['id']}"

    erased = await http.post(f"{service_url('customer')}/api/customers/{customer['id']}/erase", headers=me)
    assert erased.status_code == 202, erased.text

    async def address_gone() -> bool:
        return (await http.get(order_url, headers=me)).json()["shipping_address"] is None

    await eventually(address_gone, within=60, what="order-references cleared the order's address")
    assert (await http.get(order_url, headers=me)).status_code == 200
    assert (await http.get(f"{service_url('customer')}/api/customers/{customer['id']}", headers=me)).status_code == 404
    log = await http.get(f"{service_url('customer')}/api/customers/{customer['id']}/access-log", headers=me)
    assert log.status_code == 200, log.text


async def test_a_refund_made_by_hand_is_not_taken_off_the_customers_total_spent(http: httpx.AsyncClient) -> None:
    """README, customer stats: total_spent is net of cancellations and of returns' refunds only."""
    customer = await create_customer()
    me = as_customer(customer)
    product = await create_product("10.00")
    await set_stock(product["id"], 5)
    checkout = service_url("checkout")
    cart = (await http.post(f"{checkout}/api/carts", json={"customer_id": customer["id"]}, headers=me)).json()
    await http.post(
        f"{checkout}/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 1}, headers=me
    )
    body = {
        "cart_id": cart["id"],
        "shipping_address": US,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa"},
    }
    session = (await http.post(f"{checkout}/api/checkout", json=body, headers=me)).json()
    done = await http.post(
        f"{checkout}/api/checkout/{session['id']}/complete", headers={**me, "Idempotency-Key": str(uuid.uuid4())}
    )
    order_url = f"{service_url('order')}/api/orders/{done.json()['order_id']}"

    async def order_is(status: str) -> bool:
        answer = await http.get(order_url)
        return answer.status_code == 200 and answer.json()["status"] == status

    await eventually(lambda: order_is("confirmed"), within=60, what="the order confirmed")
    for status in ("processing", "shipped"):
        moved = await http.post(f"{order_url}/status", json={"status": status}, headers=auth_headers("staff"))
        assert moved.status_code == 200, moved.text
    payments = f"{service_url('payment')}/api/payments"

    async def payment() -> dict[str, Any]:
        found: list[dict[str, Any]] = (await http.get(payments, params={"order_id": done.json()["order_id"]})).json()
        return found[0] if found else {}

    async def captured() -> bool:
        return (await payment()).get("status") == "captured"

    await eventually(captured, within=60, what="the capture")
    refund = await http.post(
        f"{payments}/{(await payment())['id']}/refund",
        json={"amount": "1.00", "reason": "goodwill"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert refund.status_code in (201, 202), refund.text

    async def refunded() -> bool:
        return (await payment()).get("refunded_amount") == "1.00"

    await eventually(refunded, within=60, what="the refund by hand")
    stats_url = f"{service_url('customer')}/api/customers/{customer['id']}/stats"

    async def counted() -> bool:
        return bool((await http.get(stats_url)).json()["orders_count"] == 1)

    await eventually(counted, within=60, what="customer stats count the order")
    stats = (await http.get(stats_url)).json()
    [line] = stats["by_currency"]
    assert (line["currency"], line["total_spent"]) == (session["currency"], session["total_amount"]), stats
    assert (stats["returns_count"], line["refunded_amount"]) == (0, "0.00")


# --- operator's pages (session 29): what docs/operations.md and README's Connectors say, on the running stack

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions (followed by '('),
    keywords, label matchers, strings, label lists of by/on/... or durations."""
    expr = re.sub(r'"[^"]*"', "", expr)  # strings (label_replace's arguments, matcher values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr))
    return {name for name in names - PROMQL_WORDS if not re.fullmatch(r"[0-9.e]+|[smhdwy]", name)}


def test_metric_names_are_read_from_promql() -> None:
    expr = 'label_replace(a_b{slot=~"x"}, "s", "$1", "slot", "(.+)") > 30 or sum by (group) (deriv(c_d[5m])) > 0'
    assert metric_names(expr) == {"a_b", "c_d"}


def test_every_alert_loads_healthy_and_reads_metrics_the_stack_exports() -> None:
    # operations.md, Alerts: each rule of infra/prometheus/rules/commerce.yml, as the running Prometheus
    # evaluates it. A metric an alert names that nothing exports makes the alert silently never fire.
    prometheus = f"http://127.0.0.1:{monitoring.PROMETHEUS_PORT}"
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    written = {
        rule["alert"]: rule
        for group in yaml.safe_load((monitoring.RULES / "commerce.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert set(loaded) == set(written)
    # Names Prometheus has seen (its head block: about the last 2 h), so a series that exists only while
    # something happens (pg_long_running_*: an active query) counts once it has happened recently; and names
    # a target it scrapes declares (its # HELP/# TYPE lines, Prometheus' metadata API) before the first sample:
    # a labelled counter such as outbox_consumer_retries_total has no series until a consumer first retries,
    # which a fresh stack may not have done yet.
    seen = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    seen |= set(httpx.get(f"{prometheus}/api/v1/metadata", timeout=10).json()["data"])
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
        assert metric_names(written[name]["expr"]) <= seen | {"up"}, (name, metric_names(written[name]["expr"]) - seen)


def test_every_connector_file_passes_connects_own_validation() -> None:
    # README, Connectors: "Connect checks a config without creating anything ... 0", for each file as it is
    # (the password placeholder resolved by the worker's config provider).
    validate = f"{connect_url()}/connector-plugins/io.debezium.connector.postgresql.PostgresConnector/config/validate"
    for path in connectors.connector_files():
        spec = json.loads(path.read_text())
        answer = httpx.put(validate, json={**spec["config"], "name": spec["name"]}, timeout=30).json()
        errors = [c["value"] for c in answer["configs"] if (c["value"] or {}).get("errors")]
        assert answer["error_count"] == 0, (path.name, errors)
    names = httpx.get(f"{connect_url()}/connectors", timeout=10).json()
    assert not [name for name in names if name.startswith("validate")]  # nothing was created


def test_every_alert_has_a_row_in_both_tables_of_operations_md() -> None:
    # The Alerts table (condition) and the on-call table (first look, usual fix): DiskUsageHigh fired on the
    # shared stack (2026-11-27) with no on-call row.
    page = (REPO / "docs/operations.md").read_text()
    alerts_table = page[page.index("### Alerts") : page.index("### On call")]
    on_call_table = page[page.index("### On call") : page.index("### Dashboard")]
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((monitoring.RULES / "commerce.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }

    def first_cells(table: str) -> str:
        return "\n".join(line.split("|")[1] for line in table.splitlines() if line.startswith("| "))

    for alert in sorted(alerts):
        assert re.search(rf"\b{alert}\b", first_cells(alerts_table)), f"{alert}: no row under ### Alerts"
        assert re.search(rf"\b{alert}\b", first_cells(on_call_table)), f"{alert}: no row under ### On call"


def alert_names() -> set[str]:
    rules = yaml.safe_load((monitoring.RULES / "commerce.yml").read_text())["groups"]
    return {rule["alert"] for group in rules for rule in group["rules"] if "alert" in rule}


def test_the_inhibit_rules_name_alerts_that_exist() -> None:
    # It targeted "ReplicationSlotLagHigh", an alert that never existed, so it never inhibited anything.
    config = yaml.safe_load((monitoring.PROMETHEUS_DIR / "alertmanager.yml").read_text())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            name, op, value = re.fullmatch(r'(\w+)(=~|=)"([^"]*)"', matcher).groups()  # type: ignore[union-attr]
            if name == "alertname":
                assert set(value.split("|") if op == "=~" else [value]) <= alert_names(), matcher


def test_a_connector_down_inhibits_its_slots_lag_alert() -> None:
    # operations.md, Alerts: "A connector that is down inhibits its slot's lag alert in Alertmanager (same
    # service)". Both alerts as rules/commerce.yml labels them, posted to the running Alertmanager under a
    # service of this test's own, ending two minutes later (the default receiver delivers nowhere).
    alertmanager = f"http://127.0.0.1:{monitoring.ALERTMANAGER_PORT}"
    service = f"walkthrough-{uuid.uuid4().hex[:8]}"
    ends = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
    pair = [
        {"alertname": "ConnectorNotRunning", "connector": f"{service}-outbox", "severity": "critical"},
        {"alertname": "ReplicationLagHigh", "slot": f"{service}_outbox", "severity": "warning"},
    ]
    posted = httpx.post(
        f"{alertmanager}/api/v2/alerts",
        json=[{"labels": {**labels, "service": service}, "endsAt": ends} for labels in pair],
        timeout=10,
    )
    assert posted.status_code == 200, posted.text

    def states() -> dict[str, str]:
        answer = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": f'service="{service}"'}, timeout=10)
        return {alert["labels"]["alertname"]: alert["status"]["state"] for alert in answer.json()}

    deadline = time.monotonic() + 10
    while states() != {"ConnectorNotRunning": "active", "ReplicationLagHigh": "suppressed"}:
        assert time.monotonic() < deadline, states()
        time.sleep(0.2)
