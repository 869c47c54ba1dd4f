"""Rate limits on writes (issue 14; apps/common/rate_limit.py), against the running services.

Each test throttles an identity of its own (a fresh customer id in its token), so no other test, and no
other caller of these services, is ever limited by it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar.testing import AsyncTestClient

from apps.catalog.app import create_app as create_catalog_app
from apps.common.rate_limit import _COUNT
from apps.common.redis_store import OwnConnectionScript, create_redis_client
from tests.support.http import api_client, service_url

pytestmark = pytest.mark.usefixtures("stack")

REGISTER = f"{service_url('customer')}/api/customers"
# Refused by validation (400) after the limit has counted it: cheap, and it writes nothing.
INVALID = {"email": "not-an-email"}
LIMIT_CAP = 500  # a stack configured above this is not tested here (too many requests)


@pytest.fixture
async def caller() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client("customer", customer_id=uuid.uuid4(), timeout=10) as http:
        yield http


async def _until_refused(http: httpx.AsyncClient) -> tuple[int, httpx.Response]:
    """Writes until the first 429; (writes let through, the 429)."""
    first = await http.post(REGISTER, json=INVALID)
    assert first.status_code == 400, first.text
    limit = int(first.headers["RateLimit-Limit"])
    assert 0 < limit <= LIMIT_CAP, f"RATE_LIMIT_WRITES too high to test: {limit}"
    passed = 1
    for _ in range(limit):
        answer = await http.post(REGISTER, json=INVALID)
        if answer.status_code == 429:
            return passed, answer
        assert answer.status_code == 400, answer.text
        passed += 1
    raise AssertionError(f"no 429 after {passed} writes with a limit of {limit}")


async def test_a_caller_past_the_limit_gets_429_then_recovers(caller: httpx.AsyncClient) -> None:
    passed, refused = await _until_refused(caller)

    limit = int(refused.headers["RateLimit-Limit"])
    assert passed == limit
    assert refused.json()["status_code"] == 429 and "retry after" in refused.json()["detail"]
    retry_after = int(refused.headers["Retry-After"])
    window = int(refused.headers["RateLimit-Policy"].split("w=")[1])
    assert 1 <= retry_after <= window
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["X-Content-Type-Options"] == "nosniff"  # a 429 is an answer like the others

    # Another customer, the staff and reads are not held back by this caller.
    async with api_client("customer", customer_id=uuid.uuid4()) as other:
        assert (await other.post(REGISTER, json=INVALID)).status_code == 400
    async with api_client("staff") as staff:
        answer = await staff.post(REGISTER, json=INVALID)
        assert answer.status_code == 400 and "RateLimit-Limit" not in answer.headers
    assert (await caller.get(f"{REGISTER}/{uuid.uuid4()}")).status_code != 429

    await asyncio.sleep(retry_after + 0.2)
    again = await caller.post(REGISTER, json=INVALID)
    assert again.status_code == 400, again.text
    assert int(again.headers["RateLimit-Remaining"]) == limit - 1


async def test_limited_operations_document_429_with_the_error_body() -> None:
    async with api_client() as http:
        schema = (await http.get(f"{service_url('order')}/schema/openapi.json")).json()
    place = schema["paths"]["/api/orders"]["post"]["responses"]
    assert place["429"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"
    assert "429" not in schema["paths"]["/api/orders"]["get"]["responses"]


async def test_redis_down_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Redis unreachable every write goes through (never a 429, never a 500), and it is counted."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.setenv("RATE_LIMIT_WRITES", "1/60s")
    async with AsyncTestClient(app=create_catalog_app()) as client:
        statuses = [(await client.post("/api/products", json={})).status_code for _ in range(3)]
        metrics = (await client.get("/metrics")).text
    assert statuses == [401, 401, 401]  # anonymous: refused by authentication, not by the limit
    unavailable = [line for line in metrics.splitlines() if line.startswith("commerce_rate_limit_unavailable_total")]
    assert unavailable and float(unavailable[0].split()[-1]) >= 3


async def test_the_count_survives_closed_connections_and_shares_one_connection() -> None:
    """The count runs on a connection of its own (apps/common/redis_store.py OwnConnectionScript): one Redis
    closed while idle is replaced on the spot (no error, so the limit does not fail open), a script Redis
    forgot is sent again, and twenty concurrent counts share the one connection, each answered."""
    client = create_redis_client()
    key = f"test:ratelimit:{uuid.uuid4()}"
    script = OwnConnectionScript(client.connection_pool, _COUNT)
    try:
        assert (await script.run([key], [100, 60_000]))[0] == 1
        idle_id = await script._call("CLIENT", "ID")
        await client.client_kill_filter(_id=str(idle_id))  # CLIENT KILL ID <id>
        assert (await script.run([key], [100, 60_000]))[0] == 2
        answers = await asyncio.gather(*(script.run([key], [100, 60_000]) for _ in range(20)))
        assert sorted(count for count, _ in answers) == list(range(3, 23))
        assert script._open == 1
    finally:
        await script.close()
        await client.delete(f"{key}")
        await client.aclose()
