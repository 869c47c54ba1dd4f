"""CheckoutService: prices a cart into a checkout session (catalog prices, tax, shipping, addresses) and
completes it once: checkout.completed and the converted cart commit in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import or_, select, update
from uuid_utils.compat import uuid7

from apps.checkout.events import CheckoutAddress, CheckoutCompleted, CheckoutLine, personal_address
from apps.checkout.models import CartItem, CartSession, CheckoutSession, ShippingMethod, TaxRate
from apps.checkout.rules import (
    COMPLETED,
    CONVERTED,
    GUEST_PREFIX,
    INITIALIZED,
    CartLine,
    Quote,
    ShippingOption,
    check_cart_open,
    check_cart_unchanged,
    check_guest_access,
    check_payment_token,
    check_session_open,
    check_still_sold,
    new_checkout_token,
    quote,
    reprice,
    shipping_option,
)
from apps.checkout.schemas import lines_to_json
from apps.checkout.sealed import opened_addresses, seal_addresses
from apps.checkout.services import CartService, now
from apps.common.access_log import Touched, log_access, note_read
from apps.common.errors import (
    InconsistentFields,
    InvalidField,
    NotFound,
    OutOfRange,
    StateConflict,
    UnknownReference,
)
from apps.common.pricing import MAX_LINES
from apps.common.responses import from_row
from outbox.writer import add_event

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.checkout.cache import CartCache
    from apps.checkout.clients import Dependencies, SavedAddress
    from apps.checkout.schemas import CheckoutCreate
    from apps.checkout.settings import CheckoutSettings
    from apps.common.addresses import Address
    from apps.common.personal import DataKey


@dataclass(frozen=True, slots=True)
class Completed:
    session: CheckoutSession
    replayed: bool  # True when the session had already been completed (by this or another key)


@dataclass(frozen=True, slots=True)
class _CartToPrice:
    """The cart as read before the catalog is asked; ``version`` is checked again under the lock."""

    lines: list[CartLine]
    version: str
    currency: str
    customer_id: str | None
    guest_hash: str | None


@dataclass(frozen=True, slots=True)
class _Addresses:
    shipping: dict[str, Any]
    billing: dict[str, Any]


def display_status(session: CheckoutSession, at: dt.datetime) -> str:
    """An open session past its expiry shows as expired (nothing rewrites the row for it)."""
    return "expired" if session.status == INITIALIZED and session.expires_at <= at else session.status


class CheckoutService:
    def __init__(
        self, session: AsyncSession, dependencies: Dependencies, cache: CartCache, settings: CheckoutSettings
    ) -> None:
        self.carts = CartService(session, dependencies, cache, settings)
        self.session = session
        self.dependencies = dependencies

    async def start(self, data: CheckoutCreate, token: str | None) -> CheckoutSession:
        """Price the cart as it is now into a session that can be completed until it expires."""
        billing_given = _check_start_request(data)
        cart = await self._cart_to_price(data, token)
        await self.session.rollback()  # no pooled connection held during the dependency calls
        priced, addresses = await self._price(data, cart, billing_given)
        locked = await self.carts.open_cart(data.cart_id, token, lock=True)
        check_cart_unchanged(cart.version, locked.updated_at.isoformat())
        await self._refresh_cart_prices(locked.id, priced)
        session = self._new_session(data, cart, locked, priced, addresses)
        seal_addresses(session)  # after the id: the envelopes are bound to it
        self.session.add(session)
        await log_access(self.session, "checkout_sessions", "INSERT", [Touched(session.id, session.customer_id)])
        await self.session.commit()
        await self.carts.cache.invalidate(locked.id)  # its lines may carry new prices
        return session

    async def _cart_to_price(self, data: CheckoutCreate, token: str | None) -> _CartToPrice:
        """The cart this caller may check out, read before anything remote is asked: a non-empty one."""
        try:
            cart = await self.carts.open_cart(data.cart_id, token)
        except NotFound:
            raise UnknownReference("cart_id", "unknown cart") from None
        if cart.customer_id is None:
            for name in ("customer_shipping_address_id", "customer_billing_address_id"):
                if getattr(data, name) is not None:
                    raise InvalidField(name, "a guest has no saved addresses: send the address itself")
        items = await self.carts.items(cart.id)
        if not items or cart.currency is None:
            raise StateConflict("cart_id", "the cart is empty")
        if len(items) > MAX_LINES:  # a cart filled before add_item's cap: the catalog would refuse to price it
            raise OutOfRange("cart_id", f"the cart has {len(items)} products; an order takes at most {MAX_LINES}")
        return _CartToPrice(
            lines=[CartLine(i.product_id, i.quantity) for i in items],
            version=cart.updated_at.isoformat(),
            currency=cart.currency,
            customer_id=cart.customer_id,
            guest_hash=cart.guest_token,
        )

    async def _price(self, data: CheckoutCreate, cart: _CartToPrice, billing_given: bool) -> tuple[Quote, _Addresses]:
        """Today's catalog prices, the addresses (saved ones asked of the customer service), shipping and tax."""
        wants_saved = data.customer_shipping_address_id or data.customer_billing_address_id
        prices, saved = await asyncio.gather(
            self.dependencies.prices([line.product_id for line in cart.lines]),
            self.dependencies.addresses(cart.customer_id) if cart.customer_id and wants_saved else _none(),
        )
        lines = reprice(cart.lines, prices, cart.currency)
        shipping_to = _address(data.shipping_address, data.customer_shipping_address_id, saved, "shipping")
        billing_to = (
            _address(data.billing_address, data.customer_billing_address_id, saved, "billing")
            if billing_given
            else shipping_to
        )
        country_field = "customer_shipping_address_id" if data.customer_shipping_address_id else "shipping_address"
        priced = quote(
            lines,
            cart.currency,
            await self._shipping_option(data.shipping_method_id, cart.currency),
            await self._tax_rate(shipping_to["country"], f"{country_field}.country"),
        )
        return priced, _Addresses(shipping_to, billing_to)

    def _new_session(
        self, data: CheckoutCreate, cart: _CartToPrice, locked: CartSession, priced: Quote, addresses: _Addresses
    ) -> CheckoutSession:
        """The session row as priced (its addresses still open: the caller seals them)."""
        at = now()
        return CheckoutSession(
            id=uuid7(),
            session_token=new_checkout_token(),
            customer_id=cart.customer_id or locked.session_id,
            cart_id=locked.id,
            status=INITIALIZED,
            shipping_address=addresses.shipping,
            billing_address=addresses.billing,
            customer_shipping_address_id=_str(data.customer_shipping_address_id),
            customer_billing_address_id=_str(data.customer_billing_address_id),
            payment_method_id=data.payment_method.token,
            payment_method_type=data.payment_method.type,
            shipping_method_id=priced.shipping.id,
            shipping_method_name=priced.shipping.name,
            shipping_cost=priced.shipping.cost,
            subtotal=priced.subtotal,
            tax_amount=priced.tax_amount,
            shipping_amount=priced.shipping_amount,
            discount_amount=priced.discount_amount,
            total_amount=priced.total_amount,
            currency=cart.currency,
            metadata_={
                "lines": lines_to_json(priced.lines),
                "cart_version": cart.version,
                "guest_token_hash": cart.guest_hash,
            },
            created_at=at,
            updated_at=at,
            expires_at=at + self.carts.settings.checkout_session_ttl,
        )

    async def get(
        self,
        checkout_id: uuid.UUID,
        token: str | None,
        *,
        lock: bool = False,
        owner: uuid.UUID | None = None,
        any_guest: bool = False,
    ) -> CheckoutSession:
        """The session; with ``owner`` (a customer's read: apps/common/auth.py ``read_owner``) only that
        customer's or a guest's (whose token is checked after): another customer's is missing by the same
        statement as an unknown id. ``any_guest`` (support's read): a guest's without its token."""
        query = select(CheckoutSession).where(CheckoutSession.id == checkout_id)
        if owner is not None:
            guest = CheckoutSession.customer_id.startswith(GUEST_PREFIX, autoescape=True)
            query = query.where(or_(CheckoutSession.customer_id == str(owner), guest))
        # A locked read refreshes a row this session read before: without populate_existing the ORM keeps
        # the earlier values (another request may have completed the session in between).
        query = query.with_for_update().execution_options(populate_existing=True) if lock else query
        session: CheckoutSession | None = await self.session.scalar(query)
        if session is None:
            raise NotFound(f"checkout session {checkout_id} not found")
        if not any_guest:
            check_guest_access(session.metadata_.get("guest_token_hash"), token)
        if not lock:  # a locked read is the start of a change, which logs itself
            note_read("checkout_sessions", [Touched(session.id, session.customer_id)])
        return session

    async def complete(self, seen: CheckoutSession, token: str | None, idempotency_key: str) -> Completed:
        """Once per session, whatever the key. ``seen`` is the session as the caller read it (no lock).

        Two steps, so that no row lock, transaction or pooled connection is held while the customer service
        and the catalog answer (up to their 2 s timeout): first the buyer's data key and the lines' prices are
        asked for with nothing open, then the session and its cart are locked and every check is made again
        on what they hold now (a line no longer sold at the session's price: rules.check_still_sold). The row lock
        makes concurrent calls wait for the first; what changed during the call (completed by another call,
        cancelled by an erasure, the cart changed or abandoned) is seen under the lock. Why an erasure
        during the call leaves nothing readable: docs/decisions.md, "The checkout asks for the buyer's data
        key before it locks anything"."""
        if seen.status == COMPLETED:
            return Completed(seen, replayed=True)
        check_session_open(seen.status, seen.expires_at, now())
        checkout_id, subject, lines = seen.id, seen.customer_id, _lines(seen)
        await self.session.rollback()  # nothing open during the calls (the read above began a transaction)
        key, catalog = await asyncio.gather(
            self.dependencies.data_keys.for_sealing(subject),  # the buyer's, for the event
            self.dependencies.prices([line.product_id for line in lines]),  # still sold at the session's prices?
        )
        if key is None:  # destroyed: the buyer was erased and the checkout consumer is about to cancel this
            raise StateConflict("checkout_id", "the checkout session is cancelled: its customer's data was erased")

        session = await self.get(checkout_id, token, lock=True)
        if session.status == COMPLETED:
            return Completed(session, replayed=True)
        at = now()
        check_session_open(session.status, session.expires_at, at)
        if session.customer_id != subject:  # never changes; a key is only ever used for its own subject
            raise StateConflict("checkout_id", "the checkout session changed hands; start a new checkout")
        if session.cart_id is None:
            raise StateConflict("cart_id", "the cart of this checkout no longer exists")
        cart = await self.carts.get(session.cart_id, lock=True)
        check_cart_open(cart.status)
        check_cart_unchanged(session.metadata_.get("cart_version"), cart.updated_at.isoformat())
        check_still_sold(lines, catalog, session.currency)
        session.status, session.completed_at, session.updated_at = COMPLETED, at, at
        session.order_id = uuid7()
        session.metadata_ = {**session.metadata_, "idempotency_key": idempotency_key}
        cart.status, cart.updated_at = CONVERTED, at
        await add_event(self.session, session.id, _completed(session, key, is_guest=cart.customer_id is None))
        await log_access(self.session, "checkout_sessions", "UPDATE", [Touched(session.id, session.customer_id)])
        await self.session.commit()
        await self.carts.cache.invalidate(cart.id)
        return Completed(session, replayed=False)

    async def _shipping_option(self, method_id: str, currency: str) -> ShippingOption:
        method = await self.session.get(ShippingMethod, (method_id, currency))
        if method is None or not method.is_active:
            raise UnknownReference("shipping_method_id", f"no shipping method {method_id!r} for {currency}")
        return shipping_option(method.id, method.name, method.cost, currency)

    async def _tax_rate(self, country: str, field: str) -> Decimal:
        rate = await self.session.get(TaxRate, country)
        if rate is None:
            raise UnknownReference(field, f"we do not ship to {country}")
        return rate.rate

    async def _refresh_cart_prices(self, cart_id: uuid.UUID, priced: Quote) -> None:
        """The cart shows what the checkout charges: today's catalog prices (the cart's version stays)."""
        for line in priced.lines:
            await self.session.execute(
                update(CartItem)
                .where(CartItem.cart_session_id == cart_id, CartItem.product_id == line.product_id)
                .where(CartItem.unit_price.is_distinct_from(line.unit_price))
                .values(unit_price=line.unit_price, total_price=line.total_price, updated_at=now())
            )


async def _none() -> None:
    return None


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)


def _check_start_request(data: CheckoutCreate) -> bool:
    """The checks on the body alone, before anything is read; whether a billing address was given (none:
    bill to the shipping address)."""
    _check_address_choice(data.shipping_address, data.customer_shipping_address_id, "shipping")
    billing_given = data.billing_address is not None or data.customer_billing_address_id is not None
    if billing_given:
        _check_address_choice(data.billing_address, data.customer_billing_address_id, "billing")
    check_payment_token(data.payment_method.token)
    return billing_given


def _check_address_choice(inline: Address | None, saved_id: int | None, kind: str) -> None:
    if inline is not None and saved_id is not None:
        raise InconsistentFields(f"customer_{kind}_address_id", f"send {kind}_address or this, not both")
    if inline is None and saved_id is None:
        raise InconsistentFields(f"{kind}_address", f"required (or customer_{kind}_address_id)")


def _address(
    inline: Address | None, saved_id: int | None, saved: list[SavedAddress] | None, kind: str
) -> dict[str, Any]:
    if inline is not None:
        return dict(msgspec.to_builtins(inline))
    match = next((a for a in saved or [] if a.id == saved_id), None)
    if match is None:
        raise UnknownReference(f"customer_{kind}_address_id", "not one of the customer's saved addresses")
    fields = msgspec.to_builtins(match)
    return {k: v for k, v in fields.items() if k not in ("id", "type")}


def _lines(session: CheckoutSession) -> list[CheckoutLine]:
    """The lines the session was priced with (``metadata.lines``, written when it started)."""
    return msgspec.convert(session.metadata_["lines"], list[CheckoutLine], strict=False)


def _completed(session: CheckoutSession, key: DataKey | None, *, is_guest: bool) -> CheckoutCompleted:
    """The event from the completed session's columns, with its priced lines; its addresses opened from
    the session's envelopes and sealed again with the buyer's own data key (apps/common/personal.py)."""
    assert session.order_id is not None and session.cart_id is not None and session.completed_at is not None
    addresses = {
        column: personal_address(msgspec.convert(address, CheckoutAddress), key, f"{column}.", seal=True)
        for column, address in opened_addresses(session).items()
    }
    return from_row(
        CheckoutCompleted,
        session,
        **addresses,
        checkout_id=session.id,
        is_guest=is_guest,
        lines=_lines(session),
        shipping_method_id=session.shipping_method_id or "",
        shipping_method_name=session.shipping_method_name or "",
        payment_method_type=session.payment_method_type or "",
        payment_method_id=session.payment_method_id or "",
    )
