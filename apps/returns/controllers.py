"""HTTP routes of the returns service: decode, call one ReturnService method, answer through a mapper."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from apps.common.auth import AnyRequest, allow, ensure_visible, own_rows, principal_of, read_owner
from apps.common.errors import UnknownReference
from apps.common.fields import LINE_PATTERN
from apps.common.pagination import LINES_BOUND, Cursor
from apps.common.providers import create_service_provider
from apps.returns.schemas import (
    ApproveRequest,
    ReceiveRequest,
    RejectRequest,
    RetryRefundRequest,
    ReturnCreate,
    ReturnOut,
    ReturnPage,
    to_return_out,
)
from apps.returns.services import ReturnService

__all__ = ["ReturnController"]

Returns: TypeAlias = NamedDependency[ReturnService]
# Opened once in the app's lifespan (apps/returns/app.py) and shared by every request.
FROM_STATE = ["orders", "returns_settings", "payments", "customers"]
UNKNOWN_ORDER = "the order service does not know this order"


class ReturnController(Controller):
    """Returns of delivered orders: request, approve or reject, receive; refunds and restocking follow."""

    path = "/api/returns"
    tags = ["returns"]
    dependencies = {"returns": create_service_provider(ReturnService, from_state=FROM_STATE)}

    @post(status_code=HTTP_201_CREATED, guards=[allow("customer", "staff", rows=True)])
    async def create_return(self, data: JSONBody[ReturnCreate], returns: Returns, request: AnyRequest) -> ReturnOut:
        """Request a return: 201; 422 for an unknown order (a customer's: another customer's too) or order
        line, a line twice or more units than ordered; 409 for an order not delivered, past the return
        window, units already returned, or a description for a buyer already erased (it would be kept)."""
        principal = principal_of(request)
        owner = await returns.prepare(data.order_id, read_owner(principal))  # nothing locked or open after it
        ensure_visible(principal, owner, UnknownReference("order_id", UNKNOWN_ORDER))
        return to_return_out(await returns.create(data, owner))

    @get("/{return_id:uuid}", guards=[allow("customer", "staff", rows=True)])
    async def get_return(self, return_id: FromPath[uuid.UUID], returns: Returns, request: AnyRequest) -> ReturnOut:
        """One return with its items; 404 if unknown (or, for a customer, another customer's)."""
        principal = principal_of(request)
        found = await returns.get(return_id, read_owner(principal))
        ensure_visible(principal, found.customer_id, f"return {return_id} not found")
        return to_return_out(found)

    @get(guards=[allow("customer", "staff", rows=True)])
    async def list_returns(
        self,
        returns: Returns,
        request: AnyRequest,
        order_id: Annotated[uuid.UUID | None, QueryParameter(description="an order's returns")] = None,
        customer_id: Annotated[
            str | None, QueryParameter(min_length=1, max_length=36, pattern=LINE_PATTERN, description="whose returns")
        ] = None,
        cursor: Cursor = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=100, description=f"the most returns on the page; {LINES_BOUND}")
        ] = 20,
    ) -> ReturnPage:
        """Returns of an order and/or a customer (every return if neither), newest first, a page at a time;
        a customer lists only their own (404 for another customer's id). A page ends early rather than pass
        1,000 items (``pagination.MAX_PAGE_LINES``)."""
        customer_id = own_rows(principal_of(request), customer_id, f"customer {customer_id} not found")
        page, next_cursor = await returns.list(order_id=order_id, customer_id=customer_id, limit=limit, cursor=cursor)
        return ReturnPage(items=[to_return_out(r) for r in page], next_cursor=next_cursor)

    @post("/{return_id:uuid}/approve", status_code=HTTP_200_OK, guards=[allow("staff")])
    async def approve(
        self, return_id: FromPath[uuid.UUID], data: JSONBody[ApproveRequest], returns: Returns
    ) -> ReturnOut:
        """Approve a requested return (409 otherwise); a refund_only return is refunded now."""
        return to_return_out(await returns.approve(return_id, data))

    @post("/{return_id:uuid}/reject", status_code=HTTP_200_OK, guards=[allow("staff")])
    async def reject(
        self, return_id: FromPath[uuid.UUID], data: JSONBody[RejectRequest], returns: Returns
    ) -> ReturnOut:
        """Reject a requested return (409 otherwise)."""
        return to_return_out(await returns.reject(return_id, data))

    @post("/{return_id:uuid}/receive", status_code=HTTP_200_OK, guards=[allow("staff")])
    async def receive(
        self, return_id: FromPath[uuid.UUID], data: JSONBody[ReceiveRequest], returns: Returns
    ) -> ReturnOut:
        """The approved return's items arrived (409 otherwise): the refund and the restock follow by events."""
        return to_return_out(await returns.receive(return_id, data))

    @post("/{return_id:uuid}/retry-refund", status_code=HTTP_200_OK, guards=[allow("staff")])
    async def retry_refund(
        self, return_id: FromPath[uuid.UUID], data: JSONBody[RetryRefundRequest], returns: Returns
    ) -> ReturnOut:
        """Ask the payment service again for a refused refund: only a refund_failed return whose last retry
        was answered (409 otherwise, saying when the awaited one was asked and its event). It stays
        refund_failed (``refund_retry_requested_at`` set) until the answer: refunded, or refund_failed with
        the new ``refund_error``; a refund made by hand meanwhile (POST /api/payments/{id}/refund) that
        covers it settles it as refunded, never refunding twice. ``settle_with`` names refunds made by hand
        (at any time) that paid it back: they settle it and the provider is not asked; 422 naming an entry
        that is no refund by hand of the order's payment, 409 for one not through or refunds that do not
        cover the return, 503 if the payment service does not answer. ``abandon_awaited`` (with
        ``requested_by``) gives up an awaited retry that can never be answered (its dead letter acknowledged):
        recorded in the return's metadata; the payment service makes sure the two never both refund."""
        return to_return_out(await returns.retry_refund(return_id, data))
