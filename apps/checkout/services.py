"""CartService: carts and their lines. Every change locks the cart row, writes, commits, then invalidates
the cached view; reads come from Redis when they can and from PostgreSQL when they must."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from uuid_utils.compat import uuid7

from apps.checkout.cache import CachedCart, CartCache
from apps.checkout.models import CartItem, CartSession
from apps.checkout.rules import (
    ACTIVE,
    MAX_QUANTITY,
    GuestAccessDenied,
    cart_expires_at,
    check_cart_open,
    check_guest_access,
    check_line_currency,
    guest_session_alive,
    hash_token,
    new_guest_token,
    new_session_id,
)
from apps.checkout.schemas import CartOut, to_cart_out
from apps.common.errors import NotFound, OutOfRange, UnknownReference
from apps.common.pricing import MAX_AMOUNT, MAX_LINES

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.checkout.clients import Dependencies
    from apps.checkout.settings import CheckoutSettings


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CartService:
    def __init__(
        self, session: AsyncSession, dependencies: Dependencies, cache: CartCache, settings: CheckoutSettings
    ) -> None:
        self.session = session
        self.dependencies = dependencies
        self.cache = cache
        self.settings = settings

    # -- creating --------------------------------------------------------------------------------------

    async def create(self, customer_id: uuid.UUID | None) -> tuple[CartOut, bool]:
        """A guest cart (with its token, shown once), or the customer's active cart; True if new."""
        if customer_id is None:
            return await self._create_guest_cart(), True
        if not await self.dependencies.customer_exists(customer_id):
            raise UnknownReference("customer_id", "unknown customer")
        existing = await self._active_cart_of(str(customer_id))
        if existing is not None:
            return to_cart_out(existing, await self.items(existing.id)), False
        cart = self._new_cart(customer_id=str(customer_id))
        self.session.add(cart)
        try:
            await self.session.commit()
        except IntegrityError:
            # A concurrent request created it first (one active cart per customer): answer with that one.
            await self.session.rollback()
            existing = await self._active_cart_of(str(customer_id))
            if existing is None:
                raise
            return to_cart_out(existing, await self.items(existing.id)), False
        return to_cart_out(cart, []), True

    async def _create_guest_cart(self) -> CartOut:
        token = new_guest_token()
        cart = self._new_cart(guest_token=hash_token(token))
        self.session.add(cart)
        await self.session.commit()
        await self.cache.start_guest_session(hash_token(token), cart.id)
        view = to_cart_out(cart, [])
        view.guest_token = token
        return view

    def _new_cart(self, *, customer_id: str | None = None, guest_token: str | None = None) -> CartSession:
        at = now()
        return CartSession(
            id=uuid7(),
            session_id=new_session_id(),
            customer_id=customer_id,
            guest_token=guest_token,
            status=ACTIVE,
            expires_at=cart_expires_at(at, self.settings.cart_idle),
            metadata_={},
            created_at=at,
            updated_at=at,
        )

    async def _active_cart_of(self, customer_id: str) -> CartSession | None:
        query = select(CartSession).where(CartSession.customer_id == customer_id, CartSession.status == ACTIVE)
        cart: CartSession | None = await self.session.scalar(query)
        return cart

    # -- reading ---------------------------------------------------------------------------------------

    async def view(
        self, cart_id: uuid.UUID, token: str | None, owner: uuid.UUID | None = None, *, any_guest: bool = False
    ) -> CartOut:
        """The cart from the cache, or from the database (and then cached). ``owner`` (a customer's read:
        apps/common/auth.py ``read_owner``): another customer's cart is read as an unknown id is, a cache
        miss and a statement that finds nothing (a cached one answered ~1 ms sooner than an unknown id).
        ``any_guest`` (support's read): a guest's cart without its token, leaving the guest's session as it
        is (neither slid nor revived)."""
        token_hash = hash_token(token) if token else None
        read = await self.cache.read(cart_id, token_hash)
        cached = read.cached
        if cached is not None and owner is not None and cached.view.customer_id not in (None, str(owner)):
            cached = None
        if cached is None:
            cart = await self.get(cart_id, owner=owner)
            cached = CachedCart(
                view=to_cart_out(cart, await self.items(cart_id)),
                guest_token_hash=cart.guest_token,
                guest_expires_at=cart.expires_at,
            )
            await self.cache.fill(cart_id, read.generation, cached)
        if any_guest:
            return cached.view
        check_guest_access(cached.guest_token_hash, token)
        if cached.guest_token_hash is not None and read.guest_session_cart != str(cart_id):
            await self._revive_guest_session(cart_id, cached.guest_token_hash, cached.guest_expires_at)
        return cached.view

    async def get(self, cart_id: uuid.UUID, *, lock: bool = False, owner: uuid.UUID | None = None) -> CartSession:
        """The cart; with ``owner``, only that customer's or a guest's (whose token is checked after)."""
        query = select(CartSession).where(CartSession.id == cart_id)
        if owner is not None:
            query = query.where(or_(CartSession.customer_id == str(owner), CartSession.customer_id.is_(None)))
        cart = await self.session.scalar(query.with_for_update() if lock else query)
        if cart is None:
            raise NotFound(f"cart {cart_id} not found")
        return cart

    async def items(self, cart_id: uuid.UUID) -> list[CartItem]:
        query = select(CartItem).where(CartItem.cart_session_id == cart_id).order_by(CartItem.id)
        return list((await self.session.scalars(query.execution_options(populate_existing=True))).all())

    async def open_cart(self, cart_id: uuid.UUID, token: str | None, *, lock: bool = False) -> CartSession:
        """The cart, if this caller may change it: its guest token (if a guest's), still active."""
        cart = await self.get(cart_id, lock=lock)
        check_guest_access(cart.guest_token, token)
        # PostgreSQL slides a guest's expiry on changes only; Redis also on reads, so it may know better.
        if (
            cart.guest_token is not None
            and not guest_session_alive(cart.expires_at, now())
            and await self.cache.guest_session_cart(cart.guest_token) != str(cart_id)
        ):
            raise GuestAccessDenied("the guest session has expired")
        check_cart_open(cart.status)
        return cart

    async def _revive_guest_session(self, cart_id: uuid.UUID, token_hash: str, expires_at: dt.datetime | None) -> None:
        """Redis lost the session (flushed, restarted, or down): PostgreSQL decides, and Redis relearns it."""
        if not guest_session_alive(expires_at, now()):
            raise GuestAccessDenied("the guest session has expired")
        await self.cache.start_guest_session(token_hash, cart_id)

    # -- changing lines --------------------------------------------------------------------------------

    async def add_item(self, cart_id: uuid.UUID, token: str | None, product_id: uuid.UUID, quantity: int) -> CartOut:
        """Add a line, or raise the quantity of the product's line, at today's catalog price."""
        await self.open_cart(cart_id, token)
        await self.session.rollback()  # no pooled connection held during the catalog call
        product = (await self.dependencies.prices([product_id])).get(product_id)
        if product is None:
            raise UnknownReference("product_id", f"product {product_id} is unknown or no longer for sale")
        cart = await self.open_cart(cart_id, token, lock=True)
        cart.currency = check_line_currency(product, cart.currency, "product_id")
        # Counted under the cart's lock, so concurrent adds cannot pass the cap together.
        others = select(func.count()).where(CartItem.cart_session_id == cart_id, CartItem.product_id != product_id)
        if (await self.session.scalar(others) or 0) >= MAX_LINES:
            raise OutOfRange("product_id", f"a cart holds at most {MAX_LINES} products, as an order does")
        at = now()
        unit = product.price
        if unit * quantity > MAX_AMOUNT:
            raise OutOfRange("quantity", f"the line's total {unit * quantity} would be over {MAX_AMOUNT}")
        statement = insert(CartItem).values(
            cart_session_id=cart_id,
            product_id=product_id,
            product_sku=product.sku,
            product_name=product.name,
            quantity=quantity,
            unit_price=unit,
            total_price=unit * quantity,
            added_at=at,
            updated_at=at,
        )
        merged = CartItem.quantity + statement.excluded.quantity
        statement = statement.on_conflict_do_update(
            constraint="uq_cart_items_cart_product",
            set_={
                "quantity": merged,
                "unit_price": statement.excluded.unit_price,
                "total_price": statement.excluded.unit_price * merged,
                "product_sku": statement.excluded.product_sku,
                "product_name": statement.excluded.product_name,
                "updated_at": at,
            },
            where=(merged <= MAX_QUANTITY) & (statement.excluded.unit_price * merged <= MAX_AMOUNT),
        )
        if await self.session.scalar(statement.returning(CartItem.id)) is None:
            raise OutOfRange("quantity", f"the line would exceed {MAX_QUANTITY} units or a total of {MAX_AMOUNT}")
        return await self._commit_change(cart, at)

    async def set_quantity(self, cart_id: uuid.UUID, token: str | None, item_id: int, quantity: int) -> CartOut:
        cart = await self.open_cart(cart_id, token, lock=True)
        at = now()
        line = (CartItem.id == item_id, CartItem.cart_session_id == cart_id)
        changed = await self.session.scalar(
            update(CartItem)
            .where(*line, CartItem.unit_price * quantity <= MAX_AMOUNT)
            .values(quantity=quantity, total_price=CartItem.unit_price * quantity, updated_at=at)
            .returning(CartItem.id)
        )
        if changed is None:
            if await self.session.scalar(select(CartItem.id).where(*line)) is not None:
                raise OutOfRange("quantity", f"the line's total would be over {MAX_AMOUNT}")
            raise NotFound(f"item {item_id} not found in cart {cart_id}")
        return await self._commit_change(cart, at)

    async def remove_item(self, cart_id: uuid.UUID, token: str | None, item_id: int) -> CartOut:
        cart = await self.open_cart(cart_id, token, lock=True)
        removed = await self.session.scalar(
            delete(CartItem).where(CartItem.id == item_id, CartItem.cart_session_id == cart_id).returning(CartItem.id)
        )
        if removed is None:
            raise NotFound(f"item {item_id} not found in cart {cart_id}")
        return await self._commit_change(cart, now())

    async def _commit_change(self, cart: CartSession, at: dt.datetime) -> CartOut:
        """Slide the cart's expiry, commit, then tell Redis (the view is stale, the guest session alive)."""
        items = await self.items(cart.id)
        if not items:
            cart.currency = None  # an empty cart takes the currency of its next first line
        cart.updated_at = at
        cart.expires_at = cart_expires_at(at, self.settings.cart_idle)
        await self.session.commit()
        await self.cache.invalidate(cart.id)
        if cart.guest_token is not None:
            await self.cache.start_guest_session(cart.guest_token, cart.id)
        return to_cart_out(cart, items)
