"""Customers' personal data at rest in the real customer_db (apps/customer/sealed.py, keys.py): raw SQL
sees envelopes only; a key rotation re-seals every row while the running customer API keeps reading
them; a value moved to another row does not open; a value left in clear is sealed by the rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.crypto import CryptoError, key_id
from apps.common.db import alchemy_config
from apps.common.topology import BY_NAME, database_url
from apps.customer import keys
from apps.customer.sealed import ADDRESS_COLUMNS, email_index, keyring, open_value
from infra import postgres
from tests.support.db import fetch
from tests.support.http import api_client, service_url

pytestmark = pytest.mark.usefixtures("stack")

ADDRESS = {
    "type": "billing",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "address_line1": "12 St James's Square",
    "address_line2": "Flat 3",
    "city": "Westminster",
    "state": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
    "phone": "+44 20 7946 0958",
}


async def _customer_with_address(http: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    body = {
        "email": f"sealed-{uuid.uuid4().hex}@example.com",
        "first_name": "Ada",
        "last_name": "L",
        "phone": "+4930123456",
    }
    response = await http.post("/api/customers", json=body)
    assert response.status_code == 201, response.text
    customer = response.json()
    response = await http.post(f"/api/customers/{customer['id']}/addresses", json=ADDRESS)
    assert response.status_code == 201, response.text
    return customer, response.json()


async def _read_back(http: httpx.AsyncClient, customer_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    customer = await http.get(f"/api/customers/{customer_id}")
    addresses = await http.get(f"/api/customers/{customer_id}/addresses")
    assert (customer.status_code, addresses.status_code) == (200, 200), (customer.text, addresses.text)
    return customer.json(), addresses.json()


async def test_raw_sql_shows_no_personal_data_in_clear() -> None:
    async with api_client(base_url=service_url("customer")) as http:
        customer, address = await _customer_with_address(http)
    [row] = await fetch("customer", "SELECT * FROM customers WHERE id = $1", uuid.UUID(customer["id"]))
    assert customer["email"] not in str(dict(row)) and "30123456" not in str(dict(row))
    assert key_id(row["email"]) == key_id(row["phone"]) == keyring().ring().current
    assert row["email_index"] == email_index(customer["email"])
    [line] = await fetch("customer", "SELECT * FROM customer_addresses WHERE id = $1", address["id"])
    clear_lines = [ADDRESS[c] for c in ADDRESS_COLUMNS if c != "phone"] + ["2079460958"]
    assert [text for text in clear_lines if text in str(dict(line))] == []
    assert all(key_id(line[c]) is not None for c in ADDRESS_COLUMNS)
    assert (line["type"], line["country"]) == ("billing", "GB")  # in clear on purpose (sealed.py)
    # The whole table: every stored email is an envelope (what `just psql customer` would show).
    clear = await fetch(
        "customer", "SELECT count(*) AS n FROM customers WHERE email NOT LIKE 'v1:%' OR email LIKE '%@%'"
    )
    assert clear[0]["n"] == 0


async def test_a_value_moved_to_another_row_does_not_open() -> None:
    async with api_client(base_url=service_url("customer")) as http:
        first, _ = await _customer_with_address(http)
        second, _ = await _customer_with_address(http)
    rows = await fetch(
        "customer", "SELECT id, email FROM customers WHERE id = ANY($1::uuid[])", [first["id"], second["id"]]
    )
    sealed = {str(r["id"]): r["email"] for r in rows}
    assert open_value("customers", "email", second["id"], sealed[second["id"]]) == second["email"]
    with pytest.raises(CryptoError):
        open_value("customers", "email", second["id"], sealed[first["id"]])


async def test_rotation_reseals_every_row_and_the_running_api_still_reads_them() -> None:
    async with api_client(base_url=service_url("customer")) as http:
        customer, _ = await _customer_with_address(http)
        before = await _read_back(http, customer["id"])
        # A row written in clear (by code older than customer_0005): the rotation seals it too.
        legacy_id, legacy_email = uuid.uuid4(), f"legacy-{uuid.uuid4().hex}@example.com"
        await fetch(
            "customer",
            "INSERT INTO customers (id, email, email_index, first_name, last_name) VALUES ($1, $2, $3, 'Old', 'Row')",
            legacy_id,
            legacy_email,
            b"not yet an index " + legacy_id.bytes,
        )
        old_kid = keyring().ring().current

        new_kid, resealed = await asyncio.to_thread(keys.rotate, 2000)

        assert new_kid != old_kid
        assert resealed["customers"] > 0 and resealed["customer_addresses"] > 0
        # Every sealed value of both tables is under the new key now (the SQL reads the key ids).
        for table, columns in keys.TABLES.items():
            stale = " OR ".join(f"split_part({c}, ':', 2) <> $1" for c in columns)
            rows = await fetch("customer", f"SELECT count(*) AS n FROM {table} WHERE {stale}", new_kid)
            assert rows[0]["n"] == 0, table
        assert await _read_back(http, customer["id"]) == before  # the running service opened the new key
        legacy = await http.get(f"/api/customers/{legacy_id}")
        assert legacy.status_code == 200, legacy.text
        assert legacy.json()["email"] == legacy_email
    [row] = await fetch("customer", "SELECT email, email_index FROM customers WHERE id = $1", legacy_id)
    assert key_id(row["email"]) == new_kid and row["email_index"] == email_index(legacy_email)
    assert old_kid in keyring().ring().keys  # old keys stay: backups taken before still need them


def test_a_key_still_in_use_is_not_retired() -> None:
    with pytest.raises(CryptoError, match="still seals rows"):
        keys.retire(keyring().ring().current)


@contextlib.contextmanager
def _scratch_customer_db() -> Iterator[str]:
    spec = BY_NAME["customer"]
    name = f"customer_sealing_{uuid.uuid4().hex[:10]}"
    postgres.psql_admin(f"CREATE DATABASE {name} OWNER {spec.role}")
    url = database_url(spec).rsplit("/", 1)[0] + f"/{name}"
    previous = os.environ.get("CUSTOMER_DATABASE_URL")
    os.environ["CUSTOMER_DATABASE_URL"] = url
    try:
        yield url.replace("+asyncpg", "")
    finally:
        if previous is None:
            os.environ.pop("CUSTOMER_DATABASE_URL", None)
        else:
            os.environ["CUSTOMER_DATABASE_URL"] = previous
        postgres.psql_admin(f"DROP DATABASE {name} WITH (FORCE)")


def _query(url: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            if ";" in sql:  # a script: no rows to return
                await conn.execute(sql)
                return []
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


SEED_ROWS = """
INSERT INTO customers (id, email, phone, first_name, last_name, date_of_birth) VALUES
    ('00000000-0000-0000-0000-000000000001', 'ada@example.com', '+4930123456', 'Ada', 'L', '1815-12-10');
INSERT INTO customer_addresses (customer_id, type, address_line1, city, postal_code, country)
    VALUES ('00000000-0000-0000-0000-000000000001', 'shipping', '1 Main St', 'Berlin', '10115', 'DE');
"""


def test_customer_0005_seals_existing_rows_and_its_downgrade_opens_them() -> None:
    with _scratch_customer_db() as url:
        commands = AlembicCommands(sqlalchemy_config=alchemy_config(BY_NAME["customer"]))
        commands.upgrade("customer_0004")
        _query(url, SEED_ROWS)
        commands.upgrade("customer_0005")
        [row] = _query(url, "SELECT id, email, phone, date_of_birth, email_index FROM customers")
        assert [key_id(row[c]) for c in ("email", "phone", "date_of_birth")] == [keyring().ring().current] * 3
        assert open_value("customers", "date_of_birth", row["id"], row["date_of_birth"]) == "1815-12-10"
        assert row["email_index"] == email_index("ada@example.com")
        [line] = _query(url, "SELECT id, address_line1, city, postal_code FROM customer_addresses")
        assert open_value("customer_addresses", "city", line["id"], line["city"]) == "Berlin"
        commands.downgrade("customer_0004")
        [row] = _query(url, "SELECT email, phone, date_of_birth::text AS dob FROM customers")
        assert (row["email"], row["phone"], row["dob"]) == ("ada@example.com", "+4930123456", "1815-12-10")
        [line] = _query(url, "SELECT address_line1, city, postal_code FROM customer_addresses")
        assert tuple(line) == ("1 Main St", "Berlin", "10115")
