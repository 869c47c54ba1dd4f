"""Unit tests for the service skeleton in apps/common: the model base, the projection upsert helper and the
error vocabulary's statuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from advanced_alchemy.base import AdvancedDeclarativeBase

from apps.common.errors import (
    DependencyUnavailable,
    FieldProblem,
    InvalidField,
    NotFound,
    StateConflict,
    UnknownReference,
)
from apps.common.projections import add_deltas

pytestmark = pytest.mark.unit


def test_each_service_base_maps_the_outbox_tables_onto_its_own_metadata() -> None:
    from apps.analytics import models as analytics
    from apps.catalog import models as catalog

    catalog_tables = AdvancedDeclarativeBase.__metadata_registry__.get("catalog").tables
    analytics_tables = AdvancedDeclarativeBase.__metadata_registry__.get("analytics").tables
    assert {"event_store", "outbox_aggregate_version"} <= set(catalog_tables)
    assert "inbox" not in catalog_tables  # the catalog consumes nothing
    assert {"event_store", "outbox_aggregate_version", "inbox"} <= set(analytics_tables)
    assert catalog.Base.outbox.event_store.__table__ is catalog_tables["event_store"]
    assert analytics.Base.outbox.inbox is not None
    assert catalog.Base.outbox.event_store.__module__ == "apps.catalog.models"
    assert catalog.Base.__abstract__ and catalog.Base.__bind_key__ == "catalog"


@dataclasses.dataclass
class _Delta:
    orders: int
    revenue: Decimal


class _Session:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:
        self.calls.append((statement, params))


async def test_add_deltas_passes_one_sorted_array_per_key_part_and_field() -> None:
    session = _Session()
    later, earlier = dt.date(2026, 1, 2), dt.date(2026, 1, 1)
    deltas = {(later, "USD"): _Delta(1, Decimal("2.00")), (earlier, "EUR"): _Delta(3, Decimal("-1.50"))}
    await add_deltas(session, "UPSERT", ["day", "currency"], deltas)  # type: ignore[arg-type]
    assert session.calls == [
        (
            "UPSERT",
            {
                "day": [earlier, later],
                "currency": ["EUR", "USD"],
                "orders": [3, 1],
                "revenue": [Decimal("-1.50"), Decimal("2.00")],
            },
        )
    ]


async def test_add_deltas_takes_a_single_key_and_runs_nothing_for_no_deltas() -> None:
    session = _Session()
    ids = sorted(str(uuid.uuid4()) for _ in range(2))
    await add_deltas(session, "UPSERT", ["customer_id"], {ids[1]: _Delta(1, Decimal(1)), ids[0]: _Delta(2, Decimal(2))})  # type: ignore[arg-type]
    await add_deltas(session, "UPSERT", ["customer_id"], {})  # type: ignore[arg-type]
    assert [params["customer_id"] for _, params in session.calls] == [ids]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidField("quantity", "must be at least 0"), 400),
        (UnknownReference("customer_id", "unknown customer"), 422),
        (StateConflict("status", "already shipped"), 409),
        (NotFound("order not found"), 404),
        (DependencyUnavailable("catalog", "timed out"), 503),
    ],
)
def test_every_error_of_the_vocabulary_carries_its_status(error: Exception, status: int) -> None:
    assert getattr(error, "status_code", None) == status
    if isinstance(error, FieldProblem):
        assert (error.field, error.source) == (str(error).split(":")[0], "body")


@pytest.mark.parametrize("content", [b"<html>", b'{"id": "\xe9"}'], ids=["not json", "not utf-8"])
def test_an_unreadable_answer_of_another_service_is_that_service_unavailable(content: bytes) -> None:
    # A string that is not UTF-8 raised UnicodeDecodeError (not msgspec's DecodeError) past the client: a 500.
    from apps.common.service_client import ServiceClient

    client = ServiceClient("catalog", session=None)  # type: ignore[arg-type]  # decode sends nothing
    with pytest.raises(DependencyUnavailable, match="unexpected answer"):
        client.decode(200, content, dict)
