"""OrderService: places, reads and moves orders. Every write puts the order rows, a status history row and
the order's event in one transaction and commits it before answering.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import msgspec
from sqlalchemy import literal, select, text, true, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from uuid_utils.compat import uuid7

from apps.common.access_log import Touched, change_row, log_access, note_read
from apps.common.errors import FieldProblem, NotFound, StateConflict, UnknownReference
from apps.common.pagination import count_lines, decode_cursor, page_within_lines
from apps.order.archive import archived
from apps.order.driver import DriverStatement, pooled_connection
from apps.order.known import References
from apps.order.models import Order, OrderItem, OrderStatusHistory
from apps.order.placed import PlacedItem, PlacedOrder, PlacedSaga
from apps.order.rules import (
    CANCELLED,
    PENDING,
    RequestedLine,
    StatusReason,
    check_cancel,
    check_lines,
    fingerprint,
    order_number,
    price_order,
    status_changed_at,
    status_reason,
)
from apps.order.saga_state import OrderSaga
from apps.order.sealed import ADDRESSES, COLUMNS
from apps.order.transitions import (
    SERVICE,
    IdempotencyRecord,
    advance,
    amounts,
    cancel,
    placed_items,
    placement_params,
)

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.common.pricing import CatalogPrice, PricedLine, Quote
    from apps.order.clients import Dependencies
    from apps.order.schemas import OrderCreate


# The history row that moved the order into its status (not a payment failure's note, which keeps the status),
# read with the order in the same statement through idx_order_status_history_order: what rules.status_reason
# and rules.status_changed_at need. A pending order's is its placement (created_at): the status test stops
# the read before it starts.
_HISTORY = aliased(OrderStatusHistory)
_ENTERING = (
    select(
        _HISTORY.changed_by,
        _HISTORY.reason,
        _HISTORY.metadata_["role"].astext.label("role"),
        _HISTORY.created_at.label("entered_at"),
    )
    .where(
        _HISTORY.order_id == Order.id,
        Order.status != PENDING,
        _HISTORY.status_to == Order.status,
        _HISTORY.status_from.is_distinct_from(_HISTORY.status_to),
    )
    .order_by(_HISTORY.id.desc())
    .limit(1)
    .lateral("entering")
)


def _with_entering(query: Select[Any]) -> Select[Any]:
    """``query`` (over ``orders``) with the entering row's columns after its own (``_view`` takes them)."""
    columns = _ENTERING.c
    return query.add_columns(columns.changed_by, columns.reason, columns.role, columns.entered_at).outerjoin(
        _ENTERING, true()
    )


def _view(
    order: Order,
    items: Sequence[OrderItem],
    saga: OrderSaga | None,
    entering: Sequence[Any],
) -> OrderView:
    """The order's view, its status explained by the history row that moved it there (``_ENTERING``'s
    columns: changed_by, reason, role, entered_at; all None without such a row)."""
    changed_by, reason, role, entered_at = entering
    return OrderView(
        order,
        items,
        saga,
        status_reason=status_reason(order.status, changed_by, reason, role),
        status_changed_at=status_changed_at(order.status, order.created_at, entered_at),
    )


# A key is its customer's own (migrations order_0017-0018): another customer's use of it is invisible here.
_EARLIER = DriverStatement(
    text("SELECT order_id, request_hash FROM idempotency_keys WHERE customer_id = :customer_id AND key = :key")
)
# After a lost race, the row that won it: this customer's, or one written without a customer by the release
# before order_0017 (its request's fingerprint covers the body's customer_id, so it matches only that
# customer's request); none are left once order_0018 has run.
_WINNER = DriverStatement(
    text(
        "SELECT order_id, request_hash FROM idempotency_keys "
        "WHERE key = :key AND (customer_id = :customer_id OR customer_id IS NULL)"
    )
)


@dataclass(frozen=True)
class OrderView:
    order: Order | PlacedOrder  # Placed*: an order just placed (apps/order/placed.py)
    items: Sequence[OrderItem | PlacedItem]
    saga: OrderSaga | PlacedSaga | None = None  # None for orders placed before the saga existed
    # The addresses in clear when the caller has them (an order just placed): no need to open the sealed
    # columns again (~95 us of CPU per order); None: the answer opens them.
    addresses: dict[str, Any] | None = None
    status_reason: StatusReason | None = None  # rules.status_reason: None unless cancelled
    status_changed_at: dt.datetime | None = None  # rules.status_changed_at


@dataclass(frozen=True)
class Placed:
    view: OrderView
    replayed: bool  # True when an Idempotency-Key matched an earlier identical request


@dataclass(frozen=True, slots=True)
class _Draft:
    """An order about to be placed through the API: its rows as the answer shows them and the placement's
    parameters (apps/order/transitions.py placement_params)."""

    order: PlacedOrder
    lines: tuple[PricedLine, ...]
    saga: PlacedSaga
    addresses: dict[str, Any]  # in clear, for the answer
    params: dict[str, Any]

    @classmethod
    def of(cls, data: OrderCreate, quote: Quote, key: IdempotencyRecord | None) -> _Draft:
        now = dt.datetime.now(dt.UTC)
        order_id = uuid7()
        order = PlacedOrder(
            id=order_id,
            order_number=order_number(order_id, now),
            customer_id=str(data.customer_id),
            status=PENDING,
            payment_status="pending",
            shipping_address=msgspec.to_builtins(data.shipping_address),
            billing_address=msgspec.to_builtins(data.billing_address),
            notes=data.notes,
            created_at=now,
            updated_at=now,
            source_service=SERVICE,
            **amounts(quote),
        )
        addresses = {"shipping_address": order.shipping_address, "billing_address": order.billing_address}
        ADDRESSES.seal_row("orders", order, COLUMNS)  # in Python, before the single INSERT (transitions._PLACE)
        # No payment method through this API: the saga waits on the reservation only.
        saga = PlacedSaga.awaiting_reservation(order_id, now)
        logged = change_row("orders", "INSERT", Touched(order_id, order.customer_id))
        params = placement_params(
            order, quote.lines, saga, changed_by=SERVICE, reason="awaiting stock", idempotency=key, access_log=logged
        )
        return cls(order, quote.lines, saga, addresses, params)

    def placed(self, ids: Sequence[int], deadline_at: dt.datetime) -> Placed:
        """The answer, with the saga's deadline as the statement wrote it (the database's clock)."""
        self.saga.deadline_at = deadline_at
        items = placed_items(self.order, self.lines, ids)
        view = OrderView(self.order, items, self.saga, self.addresses, status_changed_at=self.order.created_at)
        return Placed(view, replayed=False)


def _quote(lines: Sequence[RequestedLine], guess: Mapping[uuid.UUID, CatalogPrice] | None) -> Quote | None:
    """The order priced from a guess of its products (``References.guess``), or None: no guess, or one the
    rules refuse (the read models' own rows then decide, and refuse it if they agree)."""
    if guess is None:
        return None
    try:
        return price_order(lines, guess)
    except FieldProblem:
        return None


_REUSED = "this key was used for a different request"


def _same_request(row: Mapping[str, Any], request_hash: str) -> uuid.UUID:
    """The order of an earlier request with the key, if it was this same request (else 409, naming the key)."""
    if row["request_hash"] != request_hash:
        raise StateConflict("Idempotency-Key", _REUSED, source="header")
    return cast("uuid.UUID", row["order_id"])


def _on_keys(error: IntegrityError) -> bool:
    """Whether the violation was idempotency_keys' (a lost race for a key), not another table's."""
    cause: BaseException | None = error.orig
    while cause is not None:
        if isinstance(cause, asyncpg.PostgresError):
            return getattr(cause, "table_name", None) == "idempotency_keys"
        cause = cause.__cause__
    return False


class OrderService:
    def __init__(self, session: AsyncSession, dependencies: Dependencies) -> None:
        self.session = session
        self.dependencies = dependencies

    # -- placing an order --------------------------------------------------------------------------

    async def place(self, data: OrderCreate, idempotency_key: str | None) -> Placed:
        """Check the customer, price from the catalog, then write everything in one statement.

        Every statement runs on one connection checked out of the pool for the placement, each committing
        on its own (apps/order/driver.py ``pooled_connection``): the Idempotency-Key's lookup, then usually
        one statement that reads the read models and writes the order only if they agree with the prices it
        was priced with (apps/order/known.py ``PLACE_IF_KNOWN``); otherwise the read models' rows decide (on
        a miss the services answer, written back) and the write is a statement of its own
        (apps/order/known.py ``_PLACE_CHECKED``: ``_PLACE``'s inserts, while the customer's row says known).
        Either write is atomic on its own, its data_access_log row in it. The session sends nothing on this
        path until the connection is back: a replay reads the earlier order through it, so a request never
        holds two connections."""
        request_hash = fingerprint(msgspec.json.encode(data))
        lines = [RequestedLine(item.product_id, item.quantity) for item in data.items]
        placed: Placed | None = None
        earlier_order: uuid.UUID | None = None
        try:
            async with pooled_connection(self.session):
                if idempotency_key is not None:
                    earlier_order = await self._earlier(str(data.customer_id), idempotency_key, request_hash)
                if earlier_order is None:
                    placed = await self._place(data, lines, idempotency_key, request_hash)
        except IntegrityError as exc:
            # Another request with the same Idempotency-Key committed first: answer as it did.
            await self.session.rollback()
            if idempotency_key is not None and _on_keys(exc):
                return await self._replay(str(data.customer_id), idempotency_key, request_hash)
            raise
        if placed is not None:
            return placed
        # An earlier request with this key placed it: read through the session, the connection given back.
        return Placed(await self.get(cast("uuid.UUID", earlier_order)), replayed=True)

    async def _place(
        self, data: OrderCreate, lines: list[RequestedLine], idempotency_key: str | None, request_hash: str
    ) -> Placed:
        check_lines(lines)  # before any network call: a malformed order costs no round trip
        product_ids = [line.product_id for line in lines]
        key = IdempotencyRecord(idempotency_key, request_hash) if idempotency_key is not None else None
        references = References(self.session, self.dependencies)
        # One round trip when the read models agree with what this process last read of the products: the
        # statement checks them itself (apps/order/known.py PLACE_IF_KNOWN) and writes only then.
        rows: Sequence[Mapping[str, Any]] = ()
        if (guess := _quote(lines, references.guess(product_ids))) is not None:
            draft = _Draft.of(data, guess, key)
            placed, rows = await references.place_if_known(draft.params)
            if placed is not None:
                return draft.placed(*placed)
        # The read models' rows, the customer and catalog services for what they miss (apps/order/known.py).
        exists, prices = await references.check(data.customer_id, product_ids, rows)
        if not exists:
            raise UnknownReference("customer_id", "unknown customer")
        draft = _Draft.of(data, price_order(lines, prices), key)
        if (placed := await references.place_checked(draft.params)) is None:  # erased since the check
            raise UnknownReference("customer_id", "unknown customer")
        return draft.placed(*placed)

    async def _earlier(self, customer_id: str, key: str, request_hash: str) -> uuid.UUID | None:
        """The order an earlier request of this customer with this Idempotency-Key placed (409 if its body
        differed)."""
        rows = await _EARLIER.fetch(self.session, {"customer_id": customer_id, "key": key})
        return _same_request(rows[0], request_hash) if rows else None

    async def _replay(self, customer_id: str, key: str, request_hash: str) -> Placed:
        """The answer to a request that lost the race for its key: the winner's order, or a 409."""
        won = await _WINNER.fetch(self.session, {"customer_id": customer_id, "key": key})
        # None: the key-only primary key of a database not yet at order_0018 refused another customer's row
        # (the answer every key reused across customers got before the keys were scoped).
        if not won:
            raise StateConflict("Idempotency-Key", _REUSED, source="header")
        return Placed(await self.get(_same_request(won[0], request_hash)), replayed=True)

    # -- reading -----------------------------------------------------------------------------------

    async def get(self, order_id: uuid.UUID, owner: uuid.UUID | None = None) -> OrderView:
        """The order, live or archived; ``owner`` (a customer's read: apps/common/auth.py ``read_owner``)
        is in both statements, so another customer's order is missing by the same reads as an unknown id."""
        customer_id = None if owner is None else str(owner)
        query = _with_entering(select(Order).where(Order.id == order_id))
        found = (
            await self.session.execute(query if customer_id is None else query.where(Order.customer_id == customer_id))
        ).first()
        if found is None:
            return await self._archived(order_id, customer_id)
        order, *entering = found
        note_read("orders", [Touched(order.id, order.customer_id)])
        items = (await self._items([order_id])).get(order_id, [])
        return _view(order, items, await self.session.get(OrderSaga, order_id), entering)

    async def _archived(self, order_id: uuid.UUID, customer_id: str | None) -> OrderView:
        """An order past two years, moved to the archive (apps/order/archive.py): read as it was."""
        found = await archived(self.session, Order, "id", order_id, customer_id=customer_id)
        if not found:
            raise NotFound("order not found")
        order = found[0]
        note_read("orders_archive", [Touched(order.id, order.customer_id)])
        sagas = await archived(self.session, OrderSaga, "order_id", order_id)
        items = await archived(self.session, OrderItem, "order_id", order_id)
        # Its history went to the archive with it: the row _ENTERING would have read.
        history = await archived(self.session, OrderStatusHistory, "order_id", order_id)
        moves = [h for h in history if h.status_to == order.status and h.status_from != h.status_to]
        last = moves[-1] if moves else None
        entering: tuple[Any, ...] = (
            (None,) * 4
            if last is None
            else (last.changed_by, last.reason, (last.metadata_ or {}).get("role"), last.created_at)
        )
        return _view(order, items, sagas[0] if sagas else None, entering)

    async def list_for_customer(
        self, customer_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[OrderView], str | None]:
        """A customer's orders, newest first, by keyset over (created_at, id); a page ends early rather than
        pass ``pagination.MAX_PAGE_LINES`` lines (its ``next_cursor`` goes on from there)."""
        lines = count_lines(Order, Order.id, OrderItem.order_id)
        query = _with_entering(select(Order, lines).where(Order.customer_id == str(customer_id)))
        if cursor:
            created_at, last_id = decode_cursor(cursor)
            query = query.where(tuple_(Order.created_at, Order.id) < tuple_(literal(created_at), literal(last_id)))
        query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
        found = (await self.session.execute(query)).tuples().all()
        page, next_cursor = page_within_lines([(order, count) for order, count, *_ in found], limit)
        entering = {order.id: columns for order, _, *columns in found}
        note_read("orders", [Touched(o.id, o.customer_id) for o in page])
        items = await self._items([o.id for o in page])
        sagas = await self._sagas([o.id for o in page])
        return [_view(o, items.get(o.id, []), sagas.get(o.id), entering[o.id]) for o in page], next_cursor

    async def _sagas(self, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, OrderSaga]:
        if not order_ids:
            return {}
        rows = await self.session.scalars(select(OrderSaga).where(OrderSaga.order_id.in_(order_ids)))
        return {saga.order_id: saga for saga in rows}

    async def _items(self, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[OrderItem]]:
        if not order_ids:
            return {}
        rows = await self.session.scalars(
            select(OrderItem).where(OrderItem.order_id.in_(order_ids)).order_by(OrderItem.id)
        )
        grouped: dict[uuid.UUID, list[OrderItem]] = {}
        for item in rows:
            grouped.setdefault(item.order_id, []).append(item)
        return grouped

    # -- moving an order along -----------------------------------------------------------------------

    async def change_status(self, order_id: uuid.UUID, target: str, reason: str | None, role: str) -> OrderView:
        """The back office moves an order along an allowed transition; it may also cancel a shipped order
        whose parcel was stopped before delivery (with a reason): its capture is then refunded."""
        return await self._transition(order_id, target, reason, role, back_office=True)

    async def cancel(self, order_id: uuid.UUID, reason: str | None, role: str) -> OrderView:
        """The customer's cancellation (or staff's on their behalf): until the order ships."""
        return await self._transition(order_id, CANCELLED, reason, role, back_office=False)

    async def _transition(
        self, order_id: uuid.UUID, target: str, reason: str | None, role: str, *, back_office: bool
    ) -> OrderView:
        """Lock the order (then its saga row: the saga's order), change it and add its events, commit.
        ``role``: the caller's (customer, staff, admin), recorded with the history row."""
        order, items = await self._locked(order_id)
        saga = await self.session.scalar(select(OrderSaga).where(OrderSaga.order_id == order_id).with_for_update())
        if target == CANCELLED:
            check_cancel(order.status, reason, back_office=back_office)
            await cancel(self.session, order, items, saga, reason, SERVICE, role)
        else:
            await advance(self.session, order, target, reason, role)
        await log_access(self.session, "orders", "UPDATE", [Touched(order.id, order.customer_id)])
        await self.session.commit()
        return _view(order, items, saga, (SERVICE, reason, role, order.updated_at))  # move()'s row, as written

    async def _locked(self, order_id: uuid.UUID) -> tuple[Order, list[OrderItem]]:
        """The order row locked until commit, so two concurrent changes apply one after the other."""
        order = await self.session.scalar(select(Order).where(Order.id == order_id).with_for_update())
        if order is None:
            raise NotFound("order not found")
        return order, (await self._items([order_id])).get(order_id, [])
