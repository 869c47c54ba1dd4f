"""HTTP routes of the order service: decode, call one OrderService method, return a schema."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from dataclasses import dataclass
from typing import Annotated, Final, TypeAlias, cast

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.spec import Operation, RequestBody
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from apps.common.auth import (
    AnyRequest,
    allow,
    ensure_acting_for,
    ensure_visible,
    own_rows,
    principal_of,
    read_owner,
)
from apps.common.db import lazy_session
from apps.common.headers import REPLAYED, idempotency_key_header, replayed_header
from apps.common.pagination import LINES_BOUND, Cursor
from apps.common.providers import create_service_provider
from apps.common.read_routing import replica_reads
from apps.order.schemas import CancelRequest, OrderCreate, OrderOut, OrderPage, StatusChange, to_order_out
from apps.order.services import OrderService, OrderView

Orders: TypeAlias = NamedDependency[OrderService]
_ENCODER: Final = msgspec.json.Encoder()
IdempotencyKeyHeader = Annotated[
    str | None,
    idempotency_key_header(
        "retries with the same key and body return the first order instead of placing another", max_length=255
    ),
]


@dataclass
class OptionalBody(Operation):
    """An operation whose JSON body may be left out (Litestar marks every body required)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def _role(request: AnyRequest) -> str:
    """The caller's role, recorded with the change it makes (the routes' guards admitted a token)."""
    principal = principal_of(request)
    assert principal is not None
    return principal.role


async def _visible_order(
    orders: OrderService, order_id: uuid.UUID, request: AnyRequest, asked_for: uuid.UUID | None = None
) -> OrderView:
    principal = principal_of(request)
    view = await orders.get(order_id, read_owner(principal) or asked_for)
    ensure_visible(principal, view.order.customer_id, "order not found")
    return view


class OrderController(Controller):
    """Orders: place (idempotently), read, list a customer's, move along the status flow, cancel."""

    path = "/api/orders"
    tags = ["orders"]
    dependencies = {"orders": create_service_provider(OrderService, from_state=["dependencies"])}

    # The placement sends its statements on a pooled connection of its own (apps/order/driver.py): the
    # request's session is made only if a fallback or a replay uses it. Its service is built here, not
    # injected: Litestar's dependency resolution per request cost more than the service itself
    # (docs/benchmarks.md, session 29).
    @post(status_code=HTTP_201_CREATED, guards=[allow("customer", rows=True)], response_headers=[replayed_header()])
    async def place_order(
        self,
        data: JSONBody[OrderCreate],
        request: AnyRequest,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[OrderOut]:
        """Place an order: 201; 422 for an unknown customer or product; 503 if a dependency is down; 403
        for a customer placing it for another."""
        ensure_acting_for(principal_of(request), data.customer_id, "customer_id")
        state = request.app.state
        orders = OrderService(lazy_session(state, request.scope), state["dependencies"])
        placed = await orders.place(data, idempotency_key)
        headers = REPLAYED if placed.replayed else {}
        # Encoded here by an encoder made once: the same JSON as Litestar's (msgspec's own, none of these
        # types needs a hook), without its serializer lookup per response.
        body = _ENCODER.encode(to_order_out(placed.view))
        response = Response(body, status_code=HTTP_201_CREATED, headers=headers, media_type=MediaType.JSON)
        return cast("Response[OrderOut]", response)  # the annotation is the document's: an OrderOut

    @get("/{order_id:uuid}", guards=[allow("customer", "staff", service="order:read", rows=True)])
    async def get_order(
        self,
        order_id: FromPath[uuid.UUID],
        orders: Orders,
        request: AnyRequest,
        customer_id: Annotated[
            uuid.UUID | None,
            QueryParameter(description="only if it is this customer's (404 otherwise), read as a customer reads it"),
        ] = None,
    ) -> OrderOut:
        """One order with its items; 404 if unknown (or, for a customer, another customer's). A service asking
        for a customer (returns) names them in ``customer_id``: another's order is then missing by the same
        reads as an unknown id (a customer's own token ignores it: theirs is the owner)."""
        return to_order_out(await _visible_order(orders, order_id, request, customer_id))

    # A listing: the replica may serve it (apps/common/read_routing.py), never staler than the primary.
    @get(
        dependencies={"orders": replica_reads(OrderService, from_state=["dependencies"])},
        guards=[allow("customer", "staff", rows=True)],
    )
    async def list_orders(
        self,
        orders: Orders,
        request: AnyRequest,
        customer_id: Annotated[uuid.UUID, QueryParameter(description="whose orders")],
        cursor: Cursor = None,
        limit: Annotated[
            int,
            QueryParameter(
                ge=1,
                le=100,
                description=f"the most orders on the page; {LINES_BOUND}",
            ),
        ] = 20,
    ) -> OrderPage:
        """A customer's orders, newest first, one page at a time (a customer lists only their own: 404 for
        another's). A page ends early rather than pass 1,000 lines (``pagination.MAX_PAGE_LINES``)."""
        own_rows(principal_of(request), customer_id, f"customer {customer_id} not found")
        views, next_cursor = await orders.list_for_customer(customer_id, limit=limit, cursor=cursor)
        return OrderPage(items=[to_order_out(v) for v in views], next_cursor=next_cursor)

    @post("/{order_id:uuid}/status", status_code=HTTP_200_OK, guards=[allow("staff")])
    async def change_status(
        self, order_id: FromPath[uuid.UUID], data: JSONBody[StatusChange], orders: Orders, request: AnyRequest
    ) -> OrderOut:
        """The back office moves an order along an allowed transition (409 otherwise), a shipped one to
        cancelled too (its parcel stopped before delivery; a reason is required): the capture is refunded."""
        return to_order_out(await orders.change_status(order_id, data.status, data.reason, _role(request)))

    @post(
        "/{order_id:uuid}/cancel",
        status_code=HTTP_200_OK,
        operation_class=OptionalBody,
        guards=[allow("customer", "staff", rows=True)],
    )
    async def cancel_order(
        self,
        order_id: FromPath[uuid.UUID],
        orders: Orders,
        request: AnyRequest,
        data: JSONBody[CancelRequest | None] = None,
    ) -> OrderOut:
        """The customer cancels an order that has not shipped (409 otherwise); the body {reason?} is optional."""
        await _visible_order(orders, order_id, request)
        return to_order_out(await orders.cancel(order_id, data.reason if data else None, _role(request)))
