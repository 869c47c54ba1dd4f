"""Pure warehouse rules: stock arithmetic and reservation maths. No I/O.

A reservation is all or nothing: every line of an order is covered from stock, or nothing is held and the
failure lists every product that fell short. ``Ledger`` plans reservations and releases against the stock
rows a consumer batch has locked, one order at a time in event order, and sums the net change per row so
the service writes it back in one statement.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from apps.common.errors import InvalidField, StateConflict

__all__ = [
    "DEFAULT_WAREHOUSE_ID",
    "FAILED",
    "INSUFFICIENT_STOCK",
    "INVALID_QUANTITY",
    "MAX_QUANTITY",
    "NO_ITEMS",
    "RELEASED",
    "RESERVED",
    "Allocation",
    "Ledger",
    "Line",
    "Plan",
    "Shortage",
    "Status",
    "Stock",
    "can_release",
    "check_on_hand",
    "check_quantity",
    "merge_lines",
    "plan_reservation",
]

# The warehouse the migration creates; stock set without a warehouse_id lives here, and reservations
# take from it first. Fixed, so every environment and every test agrees on it.
DEFAULT_WAREHOUSE_ID: Final = uuid.UUID("00000000-0000-0000-0000-000000000001")

# stock_levels counts are INTEGER; one billion units keeps every sum of on_hand far from overflow.
MAX_QUANTITY: Final = 1_000_000_000

Status = Literal["reserved", "released", "failed"]
RESERVED: Final = "reserved"
RELEASED: Final = "released"
FAILED: Final = "failed"

# Why nothing was reserved (the inventory.reservation_failed event's ``reason``): stable codes, not prose.
INSUFFICIENT_STOCK: Final = "insufficient_stock"
INVALID_QUANTITY: Final = "invalid_quantity"
NO_ITEMS: Final = "no_items"


@dataclass(frozen=True, slots=True)
class Line:
    """What an order asks for: a quantity of one product."""

    product_id: uuid.UUID
    quantity: int


@dataclass(frozen=True, slots=True)
class Stock:
    """One stock_levels row: a product's units in one warehouse."""

    product_id: uuid.UUID
    warehouse_id: uuid.UUID
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True, slots=True)
class Allocation:
    """Units of a product held in one warehouse for one order."""

    product_id: uuid.UUID
    warehouse_id: uuid.UUID
    quantity: int


@dataclass(frozen=True, slots=True)
class Shortage:
    """A product the order wanted more of than was available (over all warehouses)."""

    product_id: uuid.UUID
    requested: int
    available: int


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome for one order: allocations covering every line, or a reason (and shortages) for none."""

    allocations: tuple[Allocation, ...] = ()
    reason: str | None = None
    shortages: tuple[Shortage, ...] = ()

    @property
    def reserved(self) -> bool:
        return self.reason is None


def check_quantity(quantity: int, field: str = "quantity") -> int:
    """Return a stock quantity if it is a whole number of units within range."""
    if quantity < 0:
        raise InvalidField(field, "must be greater than or equal to 0")
    if quantity > MAX_QUANTITY:
        raise InvalidField(field, f"must be at most {MAX_QUANTITY}")
    return quantity


def check_on_hand(on_hand: int, reserved: int) -> int:
    """Return the new on_hand if it still covers what is reserved: stock never goes negative."""
    if on_hand < reserved:
        raise StateConflict(
            "quantity",
            f"on_hand cannot be set to {on_hand}: {reserved} units are reserved for orders; "
            f"set at least {reserved}, or wait until reservations are released",
        )
    return on_hand


def can_release(status: str) -> bool:
    """Only held units can be released; a failed or already released reservation holds none."""
    return status == RESERVED


def merge_lines(lines: Iterable[Line]) -> dict[uuid.UUID, int]:
    """Requested quantity per product (an order may name a product twice), in product-id order."""
    wanted: dict[uuid.UUID, int] = defaultdict(int)
    for line in lines:
        wanted[line.product_id] += line.quantity
    return dict(sorted(wanted.items()))


def _pick_order(rows: Iterable[Stock]) -> list[Stock]:
    # The default warehouse first, then the fullest: few lines are split, and always the same way.
    return sorted(rows, key=lambda s: (s.warehouse_id != DEFAULT_WAREHOUSE_ID, -s.available, s.warehouse_id))


def plan_reservation(lines: Sequence[Line], stock: Iterable[Stock]) -> Plan:
    """Cover every line from ``stock`` (a product without a row has 0 available), or reserve nothing.

    A line may be split over warehouses. Every short product is reported, not only the first.
    """
    if not lines:
        return Plan(reason=NO_ITEMS)
    if any(line.quantity <= 0 for line in lines):
        return Plan(reason=INVALID_QUANTITY)
    by_product: dict[uuid.UUID, list[Stock]] = defaultdict(list)
    for row in stock:
        by_product[row.product_id].append(row)

    allocations: list[Allocation] = []
    shortages: list[Shortage] = []
    for product_id, requested in merge_lines(lines).items():
        rows = _pick_order(by_product.get(product_id, ()))
        available = sum(max(row.available, 0) for row in rows)
        if available < requested:
            shortages.append(Shortage(product_id, requested, available))
            continue
        remaining = requested
        for row in rows:
            take = min(remaining, row.available)
            if take > 0:
                allocations.append(Allocation(product_id, row.warehouse_id, take))
                remaining -= take
            if remaining == 0:
                break
    if shortages:
        return Plan(reason=INSUFFICIENT_STOCK, shortages=tuple(shortages))
    return Plan(allocations=tuple(allocations))


class Ledger:
    """Stock as a batch locked it, changed order by order: later orders see earlier orders' holds."""

    def __init__(self, rows: Iterable[Stock]) -> None:
        self._rows: dict[tuple[uuid.UUID, uuid.UUID], Stock] = {(r.product_id, r.warehouse_id): r for r in rows}
        self._delta: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)

    def reserve(self, lines: Sequence[Line]) -> Plan:
        """Plan one order against the current stock and, if it is covered, hold its units."""
        plan = plan_reservation(lines, self._rows.values())
        for allocation in plan.allocations:
            self._adjust(allocation, allocation.quantity)
        return plan

    def release(self, allocations: Iterable[Allocation]) -> None:
        """Give back units an earlier reservation held."""
        for allocation in allocations:
            self._adjust(allocation, -allocation.quantity)

    def changes(self) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
        """Net change of ``reserved`` per (product, warehouse) row, in lock order, zeros left out."""
        return {key: delta for key, delta in sorted(self._delta.items()) if delta}

    def _adjust(self, allocation: Allocation, quantity: int) -> None:
        key = (allocation.product_id, allocation.warehouse_id)
        row = self._rows.get(key)
        if row is None:
            raise KeyError(f"no stock row for product {key[0]} in warehouse {key[1]}")
        reserved = row.reserved + quantity
        if reserved < 0 or reserved > row.on_hand:
            # The database's CHECK constraints would refuse it too; failing here names the row.
            raise StateConflict(
                "quantity",
                f"product {key[0]} in warehouse {key[1]}: reserved would be {reserved} of {row.on_hand} on hand",
            )
        self._rows[key] = Stock(row.product_id, row.warehouse_id, row.on_hand, reserved)
        self._delta[key] += quantity
