"""payment_0005 fills payments.amount_minor and minor_exponent from what the provider answered each
authorization with: a dinar authorized in hundredths before ff6ffb9 keeps exponent 2 (its captures and
refunds are then sent in hundredths too), every other row takes today's table. On a scratch database."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import asyncpg
import pytest
from advanced_alchemy.alembic.commands import AlembicCommands

from apps.common.db import alchemy_config
from apps.common.topology import BY_NAME
from tests.integration.test_migrations_round_trip import scratch_database

pytestmark = pytest.mark.usefixtures("stack")

PAYMENT = BY_NAME["payment"]

# (currency, amount, the authorization's outcome, the provider's answer) -> (exponent, minor units) after.
ROWS: list[tuple[str, str, str, dict[str, object] | None, tuple[int, int]]] = [
    ("BHD", "10.50", "succeeded", {"amount": 1050, "currency": "BHD"}, (2, 1050)),  # before ff6ffb9
    ("BHD", "10.50", "succeeded", {"amount": 10500, "currency": "BHD"}, (3, 10500)),  # after it
    ("kwd", "0.25", "succeeded", {"amount": 25}, (2, 25)),  # a code in lower case, before
    ("USD", "12.34", "succeeded", {"amount": 1234}, (2, 1234)),
    ("JPY", "500.00", "succeeded", {"amount": 500}, (0, 500)),
    ("KWD", "7.00", "pending", None, (3, 7000)),  # its next call sends today's table
    ("OMR", "3.10", "declined", {"error": {"code": "card_declined"}}, (3, 3100)),
    ("JOD", "2.00", "succeeded", {"amount": 5}, (3, 2000)),  # an answer that is no scaling of it
    ("TND", "4.00", "succeeded", {"amount": "400"}, (3, 4000)),  # not a JSON number: not read
]


async def _insert(url: str) -> list[uuid.UUID]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    ids = []
    try:
        for currency, amount, outcome, response, _ in ROWS:
            payment_id = uuid.uuid4()
            ids.append(payment_id)
            await conn.execute(
                "INSERT INTO payments (id, order_id, amount, currency, status, provider, payment_method_type, "
                "idempotency_key) VALUES ($1, $2, $3, $4, 'authorized', 'sandbox', 'card', $5)",
                payment_id,
                uuid.uuid4(),
                Decimal(amount),
                currency,
                f"order:{payment_id}:authorize:1",
            )
            await conn.execute(
                "INSERT INTO payment_operations (id, payment_id, kind, idempotency_key, amount, outcome, request, "
                "response) VALUES ($1, $2, 'authorize', $3, $4, $5, '{}', $6::jsonb)",
                uuid.uuid4(),
                payment_id,
                f"op:{payment_id}",
                Decimal(amount),
                outcome,
                None if response is None else json.dumps(response),
            )
    finally:
        await conn.close()
    return ids


async def _filled(url: str, ids: list[uuid.UUID]) -> list[tuple[int, int]]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        rows = {
            r["id"]: (r["minor_exponent"], r["amount_minor"])
            for r in await conn.fetch("SELECT id, minor_exponent, amount_minor FROM payments WHERE id = ANY($1)", ids)
        }
        valid = await conn.fetchval(
            "SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'payments'::regclass "
            "AND conname IN ('ck_payments_amount_minor_nonnegative', 'ck_payments_minor_exponent_known')"
        )
    finally:
        await conn.close()
    assert valid is True
    return [rows[i] for i in ids]


def test_the_backfill_keeps_the_exponent_each_authorization_was_sent_with() -> None:
    with scratch_database(PAYMENT) as url:
        commands = AlembicCommands(sqlalchemy_config=alchemy_config(PAYMENT))
        commands.upgrade("payment_0004")
        ids = asyncio.run(_insert(url))
        commands.upgrade("payment_0005")
        assert asyncio.run(_filled(url, ids)) == [expected for *_, expected in ROWS]
        commands.downgrade("payment_0004")
        commands.upgrade("head")
        assert asyncio.run(_filled(url, ids)) == [expected for *_, expected in ROWS]
