"""ReturnService: what customers and agents ask of returns over HTTP, written as rows + return.* events.

Every command locks what it decides on (the order's snapshot for a new return, the return row for a
move), applies the pure rules, writes the rows and their event in one transaction, and commits. Refund
amounts come from the order's prices (apps.returns.rules.compute_refund), never from the client.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import Select, case, func, literal, select, tuple_
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value
from uuid_utils.compat import uuid7

from apps.common.access_log import Operation, Touched, log_access, note_read
from apps.common.errors import InconsistentFields, NotFound, StateConflict, UnknownReference
from apps.common.models import utc_now
from apps.common.pagination import count_lines, decode_cursor, page_within_lines
from apps.payment.rules import SETTLE_WITH, NamedRefund, plan_settlement
from apps.returns.events import (
    ReturnApproved,
    ReturnReceived,
    ReturnRejected,
    ReturnRequested,
)
from apps.returns.models import OrderSnapshot, ReturnItem, ReturnRequest
from apps.returns.orders import lines_of, lock_order, prepare_order, terms_of
from apps.returns.progress import (
    about,
    ask_refund_again,
    complete_if_done,
    expire,
    received_lines,
    refund_order,
    request_lines,
)
from apps.returns.rules import (
    APPROVED,
    EARLIER_REFUND_IDS,
    OPEN_OR_DONE,
    RECEIVED,
    REFUND_ONLY,
    REFUND_RETRIES_ABANDONED,
    REFUND_RETRY_EVENT_ID,
    REFUND_RETRY_REQUESTED_AT,
    REFUND_SETTLE_WITH,
    REJECTED,
    REJECTION_REASON,
    REQUESTED,
    ZERO,
    OrderLine,
    ReturnedLine,
    check_lines,
    check_received,
    check_refund_retry,
    check_settle_with,
    check_transition,
    check_window,
    compute_refund,
    is_expired,
    refund_shipping_by_default,
    request_reason,
    return_number,
)
from outbox.writer import add_event

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.returns.clients import CustomerClient, OrderClient, PaymentClient, PaymentView
    from apps.returns.schemas import (
        ApproveRequest,
        ReceiveRequest,
        RejectRequest,
        RetryRefundRequest,
        ReturnCreate,
        ReturnItemIn,
    )
    from apps.returns.settings import ReturnsSettings

__all__ = ["ReturnService"]


class ReturnService:
    def __init__(
        self,
        session: AsyncSession,
        orders: OrderClient,
        settings: ReturnsSettings,
        payments: PaymentClient,
        customers: CustomerClient,
    ) -> None:
        self.session = session
        self.orders = orders
        self.settings = settings
        self.payments = payments
        self.customers = customers
        self._asked_ledger: tuple[uuid.UUID, Sequence[PaymentView]] | None = None

    # --- commands ----------------------------------------------------------------------------------

    async def prepare(self, order_id: uuid.UUID, owner: uuid.UUID | None = None) -> str | None:
        """The order's customer id, its snapshot asked of the order API first if need be, with nothing left
        open or locked (apps/returns/orders.py ``prepare_order``; ``owner``: a customer asking): call
        before ``create``."""
        return await prepare_order(self.session, self.orders, order_id, owner)

    async def create(self, data: ReturnCreate, customer_id: str | None) -> ReturnRequest:
        """A return of a delivered order's units, within the window and what is left to return.
        ``customer_id``: the order's, from ``prepare`` (which asked the order API if need be). Every remote
        call is made before the order is locked: the customer service is asked about an erasure first."""
        erased = await self._erased_with_free_text(data, customer_id)
        order = await lock_order(self.session, data.order_id)
        now = utc_now()
        check_window(order.status or "unknown", order.delivered_at, now, self.settings.window)
        lines = lines_of(order)
        asked = [ReturnedLine(item.order_item_id, item.quantity) for item in data.items]
        check_lines(asked, lines, await self._taken(data.order_id))
        if erased:
            raise StateConflict(
                "description", "this customer's personal data was erased: ask for the return without a description"
            )
        reasons = [item.reason for item in data.items]
        refund = compute_refund(
            lines, asked, terms_of(order), refund_shipping=refund_shipping_by_default(reasons), refund_tax=True
        )
        return_id: uuid.UUID = uuid7()
        request = ReturnRequest(
            id=return_id,
            return_number=return_number(return_id, now),
            order_id=data.order_id,
            customer_id=order.customer_id or "",
            status=REQUESTED,
            return_type=data.return_type,
            reason=request_reason(reasons),
            description=data.description,
            total_refund_amount=refund.total,
            no_refund_reason=refund.nothing_because,
            refund_shipping=refund_shipping_by_default(reasons),
            refund_tax=True,
            metadata_={},
            currency=terms_of(order).currency,
            created_at=now,
            updated_at=now,
            expires_at=now + self.settings.expiry,
        )
        self.session.add(request)
        for item in data.items:
            line = lines[item.order_item_id]
            self.session.add(_return_item(return_id, line, item, refund.items[line.order_item_id], now))
        await self.session.flush()
        saved = await self._lock(return_id)
        await add_event(
            self.session,
            return_id,
            ReturnRequested(
                **about(saved),
                return_type=saved.return_type,
                currency=saved.currency,
                total_refund_amount=saved.total_refund_amount,
                items=request_lines(saved),
                requested_at=now,
                expires_at=saved.expires_at,
            ),
        )
        return await self._commit_and_read(return_id, "INSERT")

    async def approve(self, return_id: uuid.UUID, data: ApproveRequest) -> ReturnRequest:
        """Approve (the refund's flags may be set here); a refund_only return asks for its refund now, or,
        with nothing to refund (an order placed without payment), is completed now."""
        await self._ask_first(return_id, data.settle_with)
        request = await self._lock_live(return_id)
        check_transition(request.status, APPROVED)
        now = utc_now()
        if data.refund_shipping is not None or data.refund_tax is not None or request.return_type == REFUND_ONLY:
            await self._reprice(request, data.refund_shipping, data.refund_tax)
        request.status, request.approved_by, request.approved_at, request.updated_at = (
            APPROVED,
            data.approved_by,
            now,
            now,
        )
        refund = None
        if request.return_type == REFUND_ONLY:
            request.expires_at = None  # nothing to wait for
            refund = refund_order(request) if request.no_refund_reason is None else None
        elif data.settle_with:
            raise InconsistentFields(SETTLE_WITH, "this return is refunded when its items arrive: name them on receive")
        settle_with = await self._settle_with_at_once(request, data.settle_with)
        event = ReturnApproved(
            **about(request),
            return_type=request.return_type,
            total_refund_amount=request.total_refund_amount,
            approved_at=now,
            refund=refund,
            settle_with=settle_with,
        )
        await add_event(self.session, return_id, event)
        await complete_if_done(self.session, request, now)
        return await self._commit_and_read(return_id)

    async def reject(self, return_id: uuid.UUID, data: RejectRequest) -> ReturnRequest:
        request = await self._lock_live(return_id)
        check_transition(request.status, REJECTED)
        now = utc_now()
        request.status, request.processed_by, request.processed_at, request.updated_at = (
            REJECTED,
            data.rejected_by,
            now,
            now,
        )
        request.metadata_ = {**request.metadata_, REJECTION_REASON: data.reason}
        await add_event(self.session, return_id, ReturnRejected(**about(request), reason=data.reason, rejected_at=now))
        return await self._commit_and_read(return_id)

    async def receive(self, return_id: uuid.UUID, data: ReceiveRequest) -> ReturnRequest:
        """The items arrived: refund what came (at the order's prices), restock what is sellable."""
        await self._ask_first(return_id, data.settle_with)
        request = await self._lock_live(return_id)
        if request.return_type == REFUND_ONLY:
            raise StateConflict("status", "a refund_only return ships nothing back")
        check_transition(request.status, RECEIVED)
        by_id = {item.id: item for item in request.items}
        check_received(
            [(i.return_item_id, i.quantity_received) for i in data.items],
            {item.id: item.quantity_returned for item in request.items},
        )
        now = utc_now()
        conditions = {i.return_item_id: (i.quantity_received, i.condition) for i in data.items}
        for item in request.items:
            item.quantity_received, item.condition_received = conditions.get(item.id, (0, None))
            item.updated_at = now
        order = await lock_order(self.session, request.order_id)
        came = [ReturnedLine(i.order_item_id, i.quantity_received) for i in by_id.values() if i.quantity_received]
        _price_refund(request, order, came)
        request.status, request.processed_by, request.processed_at, request.updated_at = (
            RECEIVED,
            data.received_by,
            now,
            now,
        )
        request.return_tracking_number = data.tracking_number or request.return_tracking_number
        settle_with = await self._settle_with_at_once(request, data.settle_with)
        event = ReturnReceived(
            **about(request),
            items=received_lines(request),
            refund=refund_order(request),
            received_at=now,
            no_refund_reason=request.no_refund_reason,
            settle_with=settle_with,
        )
        await add_event(self.session, return_id, event)
        await complete_if_done(self.session, request, now)  # nothing to refund and nothing to restock
        return await self._commit_and_read(return_id)

    async def retry_refund(self, return_id: uuid.UUID, data: RetryRefundRequest) -> ReturnRequest:
        """Ask the payment service again for a refused refund (refund_failed only, one retry at a time, unless
        staff abandon the awaited one: recorded, and its refund id passed on as an earlier one): a new
        refund id, so the provider is asked under a new key; the return stays refund_failed until the answer
        (payment.refunded or payment.refund_failed) names that id."""
        await self._ask_first(return_id, data.settle_with, order=False)
        request = await self._lock_live(return_id)
        kept = request.metadata_
        awaited, awaited_event = kept.get(REFUND_RETRY_REQUESTED_AT), kept.get(REFUND_RETRY_EVENT_ID)
        now = utc_now()
        check_refund_retry(
            request.status,
            None if awaited is None else str(awaited),
            now,
            None if awaited_event is None else str(awaited_event),
            abandon=data.abandon_awaited is not None,
            requested_by=data.requested_by,
        )
        abandoned = list(kept.get(REFUND_RETRIES_ABANDONED, []))
        if data.abandon_awaited is not None:
            # The awaited retry's refund id goes into earlier_refund_ids like any earlier one: the payment
            # service writes a never-asked row under it, so its event, if it ever applies, asks nothing.
            abandoned.append(
                {
                    "refund_id": str(request.refund_id),
                    "event_id": awaited_event,
                    "asked_at": awaited,
                    "abandoned_by": data.requested_by,
                    "reason": data.abandon_awaited,
                    "abandoned_at": now.isoformat(),
                }
            )
        if data.settle_with:
            own = [uuid.UUID(refund_id) for refund_id in kept.get(EARLIER_REFUND_IDS, [])]
            own += [request.refund_id] if request.refund_id else []
            check_settle_with(data.settle_with, own)
            await self._check_settlement(request, data.settle_with, own)
        audit = {REFUND_RETRIES_ABANDONED: abandoned} if abandoned else {}
        await ask_refund_again(
            self.session, request, now, requested_by=data.requested_by, settle_with=data.settle_with or (), audit=audit
        )
        return await self._commit_and_read(return_id)

    async def _settle_with_at_once(self, request: ReturnRequest, named: Sequence[uuid.UUID] | None) -> list[uuid.UUID]:
        """The refunds by hand staff named as this return's money where it asks for its refund (approve of a
        refund_only return, receive), checked as a retry's (422/409 naming the entry) against the amount it
        asks now, and kept in its metadata (REFUND_SETTLE_WITH). None named: none."""
        if not named:
            return []
        if request.no_refund_reason is not None:
            raise InconsistentFields(SETTLE_WITH, f"this return has {request.no_refund_reason}")
        check_settle_with(named, [])
        await self._check_settlement(request, named, [])
        request.metadata_ = {**request.metadata_, REFUND_SETTLE_WITH: [str(op_id) for op_id in named]}
        return list(named)

    async def _check_settlement(
        self, request: ReturnRequest, named: Sequence[uuid.UUID], own: Sequence[uuid.UUID]
    ) -> None:
        """Staff's named refunds, checked at once against the payment's ledger as the payment service will
        check them (apps.payment.rules.plan_settlement): 422 naming the entry that is no refund by hand of
        the order's payment, 409 for one not through or refunds that do not cover the return. The payment
        service decides again under its payment's lock (a refund counted for another return meanwhile)."""
        payments = await self._ledger_of(request.order_id)
        ledger = {op.id: op for payment in payments for op in payment.operations if op.kind == "refund"}
        refunds = [
            NamedRefund(op_id)
            if (op := ledger.get(op_id)) is None
            else NamedRefund(op_id, op.outcome, op.by_hand, op.amount - op.counted_for_returns)
            for op_id in named
        ]
        for n, refund in enumerate(refunds):
            if (fault := refund.fault()) is not None:
                problem = StateConflict if refund.known else UnknownReference
                raise problem(f"settle_with[{n}]", f"refund {refund.id} {fault}")
        own_outcomes = [(op_id, ledger[op_id].outcome) for op_id in own if op_id in ledger]
        plan = plan_settlement(request.total_refund_amount, own_outcomes, refunds)
        if plan.refused is not None:
            raise StateConflict(SETTLE_WITH, plan.refused.removeprefix(f"{SETTLE_WITH}: "))

    # --- reads -------------------------------------------------------------------------------------

    async def get(self, return_id: uuid.UUID, owner: uuid.UUID | None = None) -> ReturnRequest:
        """``owner`` (a customer's read: apps/common/auth.py ``read_owner``) is in the statement, so another
        customer's return is missing by the same read as an unknown id (its items are never loaded)."""
        request = await self._read(return_id, None if owner is None else str(owner))
        note_read("return_requests", [Touched(request.id, request.customer_id)])
        return request

    async def _read(self, return_id: uuid.UUID, customer_id: str | None = None) -> ReturnRequest:
        query = select(ReturnRequest).where(ReturnRequest.id == return_id)
        if customer_id is not None:
            query = query.where(ReturnRequest.customer_id == customer_id)
        request = await self.session.scalar(_with_items(query))
        if request is None:
            raise NotFound(f"return {return_id} not found")
        return request

    async def list(
        self, *, order_id: uuid.UUID | None, customer_id: str | None, limit: int, cursor: str | None
    ) -> tuple[Sequence[ReturnRequest], str | None]:
        """Returns of an order and/or a customer (all of them if neither is given), newest first; a page ends
        early rather than pass ``pagination.MAX_PAGE_LINES`` items (its ``next_cursor`` goes on from there)."""
        query = select(ReturnRequest, count_lines(ReturnRequest, ReturnRequest.id, ReturnItem.return_request_id))
        if order_id is not None:
            query = query.where(ReturnRequest.order_id == order_id)
        if customer_id is not None:
            query = query.where(ReturnRequest.customer_id == customer_id)
        if cursor:
            created_at, last_id = decode_cursor(cursor)
            position = tuple_(literal(created_at), literal(last_id))
            query = query.where(tuple_(ReturnRequest.created_at, ReturnRequest.id) < position)
        query = query.order_by(ReturnRequest.created_at.desc(), ReturnRequest.id.desc()).limit(limit + 1)
        page, next_cursor = page_within_lines((await self.session.execute(query)).tuples().all(), limit)
        note_read("return_requests", [Touched(r.id, r.customer_id) for r in page])
        await self._load_items(page)
        return page, next_cursor

    # --- helpers -----------------------------------------------------------------------------------

    async def _load_items(self, page: Sequence[ReturnRequest]) -> None:
        """The items of the returns a page keeps, as their ``items`` (those of the rows left out not read)."""
        if not page:
            return
        found = await self.session.scalars(
            select(ReturnItem)
            .where(ReturnItem.return_request_id.in_([r.id for r in page]))
            .order_by(ReturnItem.created_at, ReturnItem.id)
        )
        items: dict[uuid.UUID, list[ReturnItem]] = {}
        for item in found:
            items.setdefault(item.return_request_id, []).append(item)
        for request in page:
            set_committed_value(request, "items", items.get(request.id, []))

    async def _erased_with_free_text(self, data: ReturnCreate, customer_id: str | None) -> bool:
        """Whether a description comes for a person already erased, which is refused (409 naming it, after
        the other checks): the returns group clears a customer's free text once, when it applies
        customer.erased, so one written later (their token stays valid until it expires, and staff act for
        anyone) would be kept in clear for good. The return itself may still be asked for without it. Asked
        of the customer service only when there is free text, and before the order is locked. An erasure
        committed after the answer is cleared by that group unless the group applies it before this
        return commits (its UPDATE does not see the uncommitted row): a window of this request's own
        duration after the answer, which holding the order's lock during the call did not close (the
        group's statement takes no lock of the order)."""
        if data.description is None or not customer_id:
            return False
        return await self.customers.erased(customer_id)

    async def _taken(self, order_id: uuid.UUID) -> dict[int, int]:
        """Units of each order line already returned or in an open return (what came back, once received)."""
        # Asked back while requested or approved; what actually came once received. A refund_only return
        # ships nothing back (its quantity_received stays 0) and is refunded for what it asked: that counts,
        # or its units could be returned, and refunded, again once it was approved.
        counted = func.sum(
            case(
                (ReturnRequest.status.in_([REQUESTED, APPROVED]), ReturnItem.quantity_returned),
                (ReturnRequest.return_type == REFUND_ONLY, ReturnItem.quantity_returned),
                else_=ReturnItem.quantity_received,
            )
        )
        rows = await self.session.execute(
            select(ReturnItem.order_item_id, counted)
            .join(ReturnRequest, ReturnRequest.id == ReturnItem.return_request_id)
            .where(ReturnRequest.order_id == order_id, ReturnRequest.status.in_(OPEN_OR_DONE))
            .group_by(ReturnItem.order_item_id)
        )
        return {int(item_id): int(units or 0) for item_id, units in rows.tuples()}

    async def _reprice(self, request: ReturnRequest, shipping: bool | None, tax: bool | None) -> None:
        order = await lock_order(self.session, request.order_id)
        request.refund_shipping = request.refund_shipping if shipping is None else shipping
        request.refund_tax = request.refund_tax if tax is None else tax
        _price_refund(request, order, [ReturnedLine(i.order_item_id, i.quantity_returned) for i in request.items])

    async def _ask_first(
        self, return_id: uuid.UUID, settle_with: Sequence[uuid.UUID] | None, *, order: bool = True
    ) -> None:
        """The remote calls a command on this return may need, made before it locks the return (a lock held
        across them kept the payment consumer's progress and staff's other moves on the return waiting on
        the order or payment service, up to their 2 s timeouts): the order's snapshot (``prepare_order``)
        and, when refunds by hand are named, the order's ledger, checked under the lock as it was a moment
        ago (the payment service decides again under its payment's lock). Ends with nothing open."""
        order_id = await self.session.scalar(select(ReturnRequest.order_id).where(ReturnRequest.id == return_id))
        await self.session.rollback()
        if order_id is None:
            return  # the lock answers 404
        if order:
            await prepare_order(self.session, self.orders, order_id)
        if settle_with:
            self._asked_ledger = (order_id, await self.payments.of_order(order_id))

    async def _ledger_of(self, order_id: uuid.UUID) -> Sequence[PaymentView]:
        """The order's payments and ledgers: as asked before the lock (``_ask_first``), else asked now."""
        if self._asked_ledger is not None and self._asked_ledger[0] == order_id:
            return self._asked_ledger[1]
        return await self.payments.of_order(order_id)

    async def _lock_live(self, return_id: uuid.UUID) -> ReturnRequest:
        """The return, locked; one past its expiry is expired now (committed) and refused (409)."""
        request = await self._lock(return_id)
        if is_expired(request.status, request.expires_at, utc_now()):
            await expire(self.session, request, utc_now())
            await self.session.commit()
            raise StateConflict("status", f"the return expired at {request.expires_at}")
        return request

    async def _lock(self, return_id: uuid.UUID) -> ReturnRequest:
        statement = _with_items(select(ReturnRequest).where(ReturnRequest.id == return_id)).with_for_update(
            of=ReturnRequest
        )
        request = await self.session.scalar(statement)
        if request is None:
            raise NotFound(f"return {return_id} not found")
        return request

    async def _commit_and_read(self, return_id: uuid.UUID, operation: Operation = "UPDATE") -> ReturnRequest:
        changed = await self.session.get(ReturnRequest, return_id)  # locked earlier: no query
        owner = changed.customer_id if changed is not None else None
        await log_access(self.session, "return_requests", operation, [Touched(return_id, owner)])
        await self.session.commit()
        return await self._read(return_id)


def _with_items(statement: Select[tuple[ReturnRequest]]) -> Select[tuple[ReturnRequest]]:
    return statement.options(selectinload(ReturnRequest.items)).execution_options(populate_existing=True)


def _return_item(
    return_id: uuid.UUID, line: OrderLine, item: ReturnItemIn, refund_amount: Decimal, now: dt.datetime
) -> ReturnItem:
    """A new return's line: the order line's product and price as the order service priced it."""
    return ReturnItem(
        id=uuid7(),
        return_request_id=return_id,
        order_item_id=line.order_item_id,
        product_id=line.product_id,
        product_sku=line.sku,
        product_name=line.name,
        quantity_returned=item.quantity,
        quantity_received=0,
        return_reason=item.reason,
        unit_price=line.unit_price,
        refund_amount=refund_amount,
        restocked=False,
        metadata_={},
        created_at=now,
        updated_at=now,
    )


def _price_refund(request: ReturnRequest, order: OrderSnapshot, returned: list[ReturnedLine]) -> None:
    """The refund of ``returned`` at the order's prices, under the request's shipping and tax flags, written
    on its items (one not returned refunds nothing) and its total; ``order`` is locked by the caller."""
    refund = compute_refund(
        lines_of(order),
        returned,
        terms_of(order),
        refund_shipping=request.refund_shipping,
        refund_tax=request.refund_tax,
    )
    for item in request.items:
        item.refund_amount = refund.items.get(item.order_item_id, ZERO)
    request.total_refund_amount, request.no_refund_reason = refund.total, refund.nothing_because
