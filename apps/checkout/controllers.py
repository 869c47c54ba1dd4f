"""HTTP routes of the checkout service: decode, call one service method, return a schema."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from dataclasses import dataclass
from typing import Annotated, Final, TypeAlias

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Body, FromPath, HeaderParameter, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from apps.checkout.checkout_service import CheckoutService, display_status
from apps.checkout.models import CheckoutSession
from apps.checkout.rules import GUEST_HEADER
from apps.checkout.schemas import (
    CHECKOUT_CREATE_RULES,
    CartCreate,
    CartOut,
    CheckoutCreate,
    CheckoutOut,
    CompleteOut,
    ItemAdd,
    ItemUpdate,
    to_checkout_out,
)
from apps.checkout.services import CartService, now
from apps.common.auth import (
    AnyRequest,
    Principal,
    ensure_acting_for,
    ensure_owner_or_guest,
    principal_of,
    public,
    read_owner,
)
from apps.common.errors import InvalidField, NotFound, UnknownReference
from apps.common.fields import MAX_INT_ID
from apps.common.headers import REPLAYED, replayed_header
from apps.common.openapi import error_response
from apps.common.providers import create_service_provider

Carts: TypeAlias = NamedDependency[CartService]
Checkouts: TypeAlias = NamedDependency[CheckoutService]
GuestToken = Annotated[
    str | None,
    HeaderParameter(name=GUEST_HEADER, max_length=255, description="a guest cart's token (from POST /api/carts)"),
]
IdempotencyKey = Annotated[
    str | None,
    # Documented as required; checked in the handler so that the 400 names the header like every other.
    HeaderParameter(
        name="Idempotency-Key", required=True, min_length=1, max_length=255, description="retries do nothing twice"
    ),
]


# Opened once in the app's lifespan (apps/checkout/app.py) and shared by every request.
FROM_STATE = ["dependencies", "cart_cache", "checkout_settings"]
# Guests shop with their cart's token; a customer's cart and checkouts need that customer's bearer token
# (or staff's, admin's): checked on the cart or session before anything is changed.
SHOPPING = public("guest checkout: a guest cart opens with its X-Guest-Token, a customer's with their token")
# The answers of that check, in OpenAPI: the route is public, but a customer's cart or checkout is not.
SHOPPING_ANSWERS: Final = {
    401: error_response(
        401, "A customer's cart or checkout (or `customer_id`) without their bearer token, or a token that is invalid"
    ),
    403: error_response(
        403, "A guest cart or checkout without its `X-Guest-Token` (or with another's), or a service's token"
    ),
}


def _support_reads(principal: Principal | None, guest_token: str | None, reading: bool) -> bool:
    """Staff (and admin) read any cart or checkout, a guest's without its X-Guest-Token, as support does
    (README "Who may call what"); changing a guest's cart, or checking it out, still takes the token. A token
    sent is checked (and slides the guest's session) whoever sends it."""
    return reading and guest_token is None and principal is not None and principal.role in ("staff", "admin")


async def _open_cart(
    carts: CartService, cart_id: uuid.UUID, guest_token: str | None, request: AnyRequest, *, reading: bool = False
) -> CartOut:
    principal = principal_of(request)
    any_guest = _support_reads(principal, guest_token, reading)
    view = await carts.view(cart_id, guest_token, read_owner(principal), any_guest=any_guest)
    ensure_owner_or_guest(principal, view.customer_id, f"cart {cart_id} not found")
    return view


async def _check_cart_to_check_out(
    carts: CartService, cart_id: uuid.UUID, guest_token: str | None, request: AnyRequest
) -> None:
    """Another customer's cart named in the body is an unknown cart (422), as one that does not exist,
    both answered here by the same reads (a customer's read of another's cart finds nothing)."""
    principal = principal_of(request)
    unknown = UnknownReference("cart_id", "unknown cart")
    try:
        view = await carts.view(cart_id, guest_token, read_owner(principal))
    except NotFound:
        raise unknown from None
    ensure_owner_or_guest(principal, view.customer_id, unknown)


async def _open_checkout(
    checkouts: CheckoutService,
    checkout_id: uuid.UUID,
    guest_token: str | None,
    request: AnyRequest,
    *,
    reading: bool = False,
) -> CheckoutSession:
    principal = principal_of(request)
    any_guest = _support_reads(principal, guest_token, reading)
    session = await checkouts.get(checkout_id, guest_token, owner=read_owner(principal), any_guest=any_guest)
    ensure_owner_or_guest(principal, session.customer_id, f"checkout session {checkout_id} not found")
    return session


def _cart_create(body: bytes) -> CartCreate:
    """The body is optional (no body: a guest cart); a malformed one, whitespace alone included (a body,
    and not JSON), is still a 400 naming it."""
    if not body:
        return CartCreate()
    try:
        return msgspec.json.decode(body, type=CartCreate)
    except msgspec.ValidationError as exc:
        if "at `$." in str(exc):
            raise  # the handler names the field from msgspec's path
        raise InvalidField("body", str(exc)) from None
    except msgspec.DecodeError:
        raise InvalidField("body", "is not valid JSON") from None
    except UnicodeDecodeError:  # a key or string that is not UTF-8 (not a DecodeError)
        raise InvalidField("body", "is not UTF-8") from None


# A cart line's id (cart_items.id, a BIGINT): past MAX_INT_ID a 400 naming it, not the database's refusal.
ItemId = Annotated[int, PathParameter(le=MAX_INT_ID, description="the line's id (the cart's items[].id)")]

# CartCreate as POST /api/carts takes it: the body is optional and read by hand (_cart_create), so Litestar
# sees no `data` parameter and documented no body at all; Swagger and the fuzzer never learnt customer_id.
CART_CREATE_SCHEMA: Final = Schema(
    type=OpenAPIType.OBJECT,
    title="CartCreate",
    description="A customer's cart (their token), or without customer_id (or without any body) a guest's.",
    properties={
        "customer_id": Schema(
            one_of=[Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID), Schema(type=OpenAPIType.NULL)]
        )
    },
    additional_properties=False,
)


@dataclass
class _OptionalCartBody(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=False, content={"application/json": OpenAPIMediaType(schema=CART_CREATE_SCHEMA)}
        )


class CartController(Controller):
    """Carts of customers and guests, and their lines (priced by the catalog)."""

    path = "/api/carts"
    tags = ["carts"]
    dependencies = {"carts": create_service_provider(CartService, from_state=FROM_STATE)}

    @post(
        status_code=HTTP_201_CREATED,
        guards=[SHOPPING],
        operation_class=_OptionalCartBody,
        responses={
            HTTP_200_OK: ResponseSpec(data_container=CartOut, description="The customer's active cart"),
            **SHOPPING_ANSWERS,
        },
    )
    async def create_cart(self, carts: Carts, request: AnyRequest) -> Response[CartOut]:
        """A guest cart (201, with its ``guest_token``: send it as X-Guest-Token), or a customer's (with
        their token): 201 when new, 200 with the customer's active cart when there is one; 422 for an
        unknown customer."""
        data = _cart_create(await request.body())
        if data.customer_id is not None:
            ensure_acting_for(principal_of(request), data.customer_id, "customer_id")
        view, created = await carts.create(data.customer_id)
        return Response(view, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get("/{cart_id:uuid}", guards=[SHOPPING], responses=SHOPPING_ANSWERS)
    async def get_cart(
        self, cart_id: FromPath[uuid.UUID], carts: Carts, request: AnyRequest, guest_token: GuestToken = None
    ) -> CartOut:
        """The cart with its lines and subtotal; 403 for a guest cart without its token (but for staff's and
        admin's reads); 404 if unknown."""
        return await _open_cart(carts, cart_id, guest_token, request, reading=True)

    @post("/{cart_id:uuid}/items", status_code=HTTP_200_OK, guards=[SHOPPING], responses=SHOPPING_ANSWERS)
    async def add_item(
        self,
        cart_id: FromPath[uuid.UUID],
        data: JSONBody[ItemAdd],
        carts: Carts,
        request: AnyRequest,
        guest_token: GuestToken = None,
    ) -> CartOut:
        """Add a product (or raise its line's quantity); 422 naming an unknown or withdrawn product."""
        await _open_cart(carts, cart_id, guest_token, request)
        return await carts.add_item(cart_id, guest_token, data.product_id, data.quantity)

    @patch("/{cart_id:uuid}/items/{item_id:int}", guards=[SHOPPING], responses=SHOPPING_ANSWERS)
    async def set_quantity(
        self,
        cart_id: FromPath[uuid.UUID],
        item_id: ItemId,
        data: JSONBody[ItemUpdate],
        carts: Carts,
        request: AnyRequest,
        guest_token: GuestToken = None,
    ) -> CartOut:
        """Set a line's quantity (1..1000); remove a line with DELETE."""
        await _open_cart(carts, cart_id, guest_token, request)
        return await carts.set_quantity(cart_id, guest_token, item_id, data.quantity)

    @delete(
        "/{cart_id:uuid}/items/{item_id:int}", status_code=HTTP_200_OK, guards=[SHOPPING], responses=SHOPPING_ANSWERS
    )
    async def remove_item(
        self,
        cart_id: FromPath[uuid.UUID],
        item_id: ItemId,
        carts: Carts,
        request: AnyRequest,
        guest_token: GuestToken = None,
    ) -> CartOut:
        """Remove a line; answers the cart as it is now."""
        await _open_cart(carts, cart_id, guest_token, request)
        return await carts.remove_item(cart_id, guest_token, item_id)


class CheckoutController(Controller):
    """Checkout sessions: price a cart (tax, shipping, addresses), then complete it once."""

    path = "/api/checkout"
    tags = ["checkout"]
    dependencies = {"checkouts": create_service_provider(CheckoutService, from_state=FROM_STATE)}

    @post(status_code=HTTP_201_CREATED, guards=[SHOPPING], responses=SHOPPING_ANSWERS)
    async def start_checkout(
        self,
        data: Annotated[CheckoutCreate, Body(schema_extra=CHECKOUT_CREATE_RULES)],
        checkouts: Checkouts,
        request: AnyRequest,
        guest_token: GuestToken = None,
    ) -> CheckoutOut:
        """Price the cart at today's catalog prices, with tax for the destination and the shipping method."""
        await _check_cart_to_check_out(checkouts.carts, data.cart_id, guest_token, request)
        session = await checkouts.start(data, guest_token)
        return to_checkout_out(session, display_status(session, now()))

    @get("/{checkout_id:uuid}", guards=[SHOPPING], responses=SHOPPING_ANSWERS)
    async def get_checkout(
        self,
        checkout_id: FromPath[uuid.UUID],
        checkouts: Checkouts,
        request: AnyRequest,
        guest_token: GuestToken = None,
    ) -> CheckoutOut:
        """A checkout session; ``expired`` once past expires_at without being completed; 403 for a guest's
        without its token (but for staff's and admin's reads)."""
        session = await _open_checkout(checkouts, checkout_id, guest_token, request, reading=True)
        return to_checkout_out(session, display_status(session, now()))

    @post(
        "/{checkout_id:uuid}/complete",
        status_code=HTTP_202_ACCEPTED,
        guards=[SHOPPING],
        responses=SHOPPING_ANSWERS,
        response_headers=[replayed_header()],
    )
    async def complete_checkout(
        self,
        checkout_id: FromPath[uuid.UUID],
        checkouts: Checkouts,
        request: AnyRequest,
        guest_token: GuestToken = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CompleteOut]:
        """Complete once: checkout.completed and the converted cart in one transaction; 202 because the
        order is created from the event. A repeat (any key) answers the same; 409 once expired, the buyer
        erased, or a product withdrawn or repriced since the checkout started (start a new one); 503 with
        nothing written when the customer service does not hand out the buyer's key, or the catalog does not
        answer."""
        if not idempotency_key:
            raise InvalidField("Idempotency-Key", "required", source="header")
        seen = await _open_checkout(checkouts, checkout_id, guest_token, request)
        done = await checkouts.complete(seen, guest_token, idempotency_key)
        body = CompleteOut(checkout_id=done.session.id, status=done.session.status, order_id=done.session.order_id)
        headers = REPLAYED if done.replayed else {}
        return Response(body, status_code=HTTP_202_ACCEPTED, headers=headers)
