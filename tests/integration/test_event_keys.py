"""The catalogue's key field of each event type holds the record's key: every event a service wrote to its
outbox carries, in that field, the aggregate id it was written under (which Debezium makes the Kafka key:
tests/integration/test_catalog_outbox.py). Checked on the newest rows of every producing service's outbox,
one of them a product written here so that no run checks nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from apps.catalog.app import create_app
from outbox.config import settings
from tests.support.db import fetch
from tests.support.http import authorized

pytestmark = pytest.mark.usefixtures("stack")

# The newest rows of each outbox (ids are time-ordered): the benchmarks leave millions behind.
NEWEST = 20_000

_CHECK = f"""
SELECT e.event_type, count(*) AS checked,
       count(*) FILTER (WHERE e.event_data ->> k.key IS DISTINCT FROM e.aggregate_id::text) AS wrong,
       min(e.id::text) FILTER (WHERE e.event_data ->> k.key IS DISTINCT FROM e.aggregate_id::text) AS example
FROM (SELECT id, event_type, aggregate_id, event_data FROM event_store ORDER BY id DESC LIMIT {NEWEST}) AS e
JOIN unnest(CAST($1 AS text[]), CAST($2 AS text[])) AS k(event_type, key) USING (event_type)
GROUP BY e.event_type
"""


@pytest.fixture
async def product_id(stack: None) -> AsyncIterator[str]:
    async with authorized(AsyncTestClient(app=create_app())) as client:
        response = await client.post(
            "/api/products", json={"sku": f"KEY-{uuid.uuid4()}", "name": "Keyed mug", "price": "3.10"}
        )
        assert response.status_code == 201, response.text
        yield str(response.json()["id"])


async def test_every_written_event_carries_its_key_in_the_catalogued_field(product_id: str) -> None:
    config = settings()
    assert config.catalogue_json is not None
    events = json.loads((config.root / config.catalogue_json).read_text())["events"]
    keys_by_service: dict[str, dict[str, str]] = {}
    for event_type, entry in events.items():
        for service in entry["producers"]:
            keys_by_service.setdefault(service, {})[event_type] = entry["key"]

    checked: dict[str, int] = {}
    wrong: dict[str, str] = {}
    for service, keys in sorted(keys_by_service.items()):
        for row in await fetch(service, _CHECK, list(keys), list(keys.values())):
            checked[row["event_type"]] = row["checked"]
            if row["wrong"]:
                wrong[row["event_type"]] = f"{row['wrong']} of {row['checked']} rows, e.g. event {row['example']}"

    assert wrong == {}
    assert checked.get("product.created", 0) >= 1
    [written] = await fetch(
        "catalog", "SELECT event_data ->> 'id' AS key FROM event_store WHERE aggregate_id = $1", uuid.UUID(product_id)
    )
    assert written["key"] == product_id
