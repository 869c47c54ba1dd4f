"""Adding a batch's folded deltas to a projection table: one set-based upsert per table and batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from outbox.consumer import Probe
from outbox.statements import Statement

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["NOT_BORN_CONFIRMED", "add_deltas"]


class _CreatedStatus(msgspec.Struct):
    """order.created's status alone (the rest of its payload is not read)."""

    status: str


# The order projections' skip of order.created (customer's not_a_purchase, analytics' not_a_sale: an order
# counts once confirmed, at creation only when born confirmed) decided from the status alone: a pending order's
# order.created, one per order, is then passed over without its whole decode (~10 us per record and group).
NOT_BORN_CONFIRMED = Probe(_CreatedStatus, lambda created: created.status != "confirmed")

# Each upsert compiled once for the driver's connection (outbox.statements), keyed by the statement's id;
# the Statement keeps its TextClause alive, so an id is never reused while it is here.
_STATEMENTS: dict[int, Statement] = {}


async def add_deltas(
    session: AsyncSession, upsert: TextClause, key_names: Sequence[str], deltas: Mapping[Any, Any]
) -> None:
    """Run ``upsert`` once, with one array parameter per key part and per field of the deltas.

    ``deltas`` maps a row's key (a value, or a tuple for a composite key, its parts named by
    ``key_names``) to a dataclass of what the batch adds to that row; the parameters are named after the
    key parts and the dataclass's fields, each a list in key order. Keys are sorted, so two batches that
    touch the same rows lock them in the same order and never deadlock. Nothing to add, no statement.
    """
    keys = sorted(deltas)
    if not keys:
        return
    parts = [key if isinstance(key, tuple) else (key,) for key in keys]
    params: dict[str, list[Any]] = {name: [part[i] for part in parts] for i, name in enumerate(key_names)}
    for field in dataclasses.fields(deltas[keys[0]]):
        params[field.name] = [getattr(deltas[key], field.name) for key in keys]
    statement = _STATEMENTS.get(id(upsert)) or _STATEMENTS.setdefault(id(upsert), Statement(upsert))
    await statement.execute(session, params)
