"""What the order service knows locally of customers and products (its read models), and the rule that
decides when an order may rely on it instead of asking the customer and catalog services.

The order-references consumer group (apps/order/references.py) feeds both tables from customer.* and
product.* events; an order reads them in one query and asks the services (apps/common/dependencies.py)
only for what is missing or too old, then writes their answer back. The staleness rule (docs/decisions.md,
"Order read models"):

- A customer known here exists (customers are never deleted): no age limit. Unknown here: ask.
- A product row says what the catalog showed at some moment at or after ``confirmed_at`` (an event's own
  time, or the moment before an API call that answered it). An order pays the local price only while
  ``now - confirmed_at <= ORDER_PRICE_MAX_AGE_S`` (10 s): a price changed a moment ago is paid at the old
  price for at most that long, usually only until its event arrives (well under a second). Older, missing
  or not sellable here: ask the catalog, whose answer decides (and refreshes the row). A row still fresh
  but past ``AHEAD`` of that limit is refreshed from the catalog in the background, so that orders seldom
  find a hot product expired and wait on the call.

An order whose products this process has read before is priced from those values and placed by one
statement (``PLACE_IF_KNOWN``) that applies the rule above to the rows it reads itself and writes only if
they hold the same values: one round trip instead of the lookup's and the write's. Anything else (a value
changed since, a row missing, stale or withdrawn, an unknown customer) writes nothing, and the order goes on
from the rows that statement returned, exactly as from the lookup's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.pricing import CatalogPrice
from apps.order.driver import DriverStatement
from apps.order.models import Base
from apps.order.settings import settings
from apps.order.transitions import PLACED_DEADLINE, placement_ctes, write_placement, written

if TYPE_CHECKING:
    from apps.order.clients import Dependencies

UNDEFINED_TABLE = "42P01"
log = logging.getLogger("apps.order.known")

__all__ = ["KnownCustomer", "KnownProduct", "References", "hold_customer", "is_fresh", "max_age"]


class KnownCustomer(Base):
    """A customer the order service has seen registered (customer.registered, or the customer API)."""

    __tablename__ = "order_known_customers"

    customer_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    known_since: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
    # A tombstone (order_0019): the customer was erased. The row stays, so nothing writes it back as known.
    erased: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())


class KnownProduct(Base):
    """The catalog's product as last heard of: price, currency, whether it may be sold, and since when."""

    __tablename__ = "order_known_products"

    product_id: Mapped[uuid.UUID] = mapped_column(PG_UUID(as_uuid=True), primary_key=True)
    sku: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str | None] = mapped_column(sa.String(500))
    price: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 2))
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    sellable: Mapped[bool] = mapped_column(sa.Boolean)
    # The product's event_version last applied (0: only the API answered so far); events apply when newer.
    version: Mapped[int] = mapped_column(sa.Integer)
    # The catalog showed these values at some moment at or after this time.
    confirmed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


def max_age() -> dt.timedelta:
    """How old a product row may be for an order to pay its price (ORDER_PRICE_MAX_AGE_S, 10 s)."""
    return settings().price_max_age


def is_fresh(confirmed_at: dt.datetime, now: dt.datetime, limit: dt.timedelta) -> bool:
    """The staleness rule: a row confirmed at most ``limit`` ago (a clock step back counts as fresh)."""
    return now - confirmed_at <= limit


# One round trip: the customer, and the sellable products asked for (a LEFT JOIN from one row, so the
# customer's answer comes back even when no product is known). The known-customer row is read FOR SHARE: a
# customer whose erasure the order-references group is applying or has just committed (it marks the row
# erased: apps/order/erasure.py) reads as unknown even to a statement whose snapshot predates that commit,
# since a locked read re-checks the row's newest version (EvalPlanQual); the customer API then answers (404
# once erased: 422). A placement that locked the row first holds the erasure until the order has committed,
# so the erasure's UPDATEs see it. The cost: a row lock per order (a WAL record; concurrent orders of one
# customer share it through a MultiXact), measured in docs/benchmarks.md (session 31, X). Every placement reads
# the row through this one predicate: the API's (``_LOOKUP_SQL``, ``_PLACE_CHECKED``) and the saga's
# (``_HOLD_CUSTOMER``).
_KNOWN_ROW = "SELECT FROM order_known_customers WHERE customer_id = :customer_id AND NOT erased FOR SHARE"
_LOOKUP_SQL = f"""
    SELECT EXISTS ({_KNOWN_ROW})
               AS customer_known,
           p.product_id, p.sku, p.name, p.price, p.currency, p.confirmed_at
    FROM (SELECT 1) AS one
    LEFT JOIN order_known_products p ON p.product_id = ANY(CAST(:product_ids AS uuid[])) AND p.sellable
    """
_LOOKUP = DriverStatement(text(_LOOKUP_SQL))
# The lookup and the placement in one round trip (``References.place_if_known``): the order, priced from the
# values last read here (a guess), is written only if the read models, read by this very statement, say the
# customer is known and every line's product is sellable with that sku, name, price and currency and fresh
# (``is_fresh``: confirmed at or after ``:fresh_since``, now minus the age limit). Either way the lookup's
# rows come back, as ``_LOOKUP`` returns them, with the items' ids and the saga's deadline as written (NULL
# when nothing was written).
PLACE_IF_KNOWN = DriverStatement(
    text(
        f"""
    WITH known AS ({_LOOKUP_SQL}), ready AS (
        SELECT FROM known
        WHERE customer_known AND NOT EXISTS (
            SELECT FROM unnest(CAST(:product_ids AS uuid[]), CAST(:skus AS varchar[]), CAST(:names AS varchar[]),
                               CAST(:unit_prices AS numeric[])) AS t(product_id, sku, name, price)
            WHERE NOT EXISTS (
                SELECT FROM known k
                WHERE k.product_id = t.product_id AND k.sku = t.sku AND k.name IS NOT DISTINCT FROM t.name
                      AND k.price = t.price AND k.currency = :currency AND k.confirmed_at >= :fresh_since))
        LIMIT 1
    ), {placement_ctes("EXISTS (SELECT FROM ready)")}
    SELECT (SELECT array_agg(id ORDER BY id) FROM i) AS item_ids, {PLACED_DEADLINE}, known.* FROM known
    """
    )
)
# The fallback's write (``References.place_checked``), after ``check`` found the customer known or wrote the
# customer API's answer back: ``_PLACE``'s inserts, only while that row still says known, read FOR SHARE as the
# lookup reads it. An erasure committed between the check and this statement (a catalog call often lies between
# them) marked the row erased, which the locked read sees whatever this statement's snapshot: nothing is written,
# and the order is refused as for an unknown customer (W31-3, session 31); a placement that locks the row first
# holds the erasure until its order has committed, so the erasure's UPDATEs clear it.
_PLACE_CHECKED = DriverStatement(
    text(
        f"""
    WITH known AS (
        {_KNOWN_ROW}
    ), {placement_ctes("EXISTS (SELECT FROM known)")}
    SELECT id, {PLACED_DEADLINE} FROM i ORDER BY id
    """
    )
)
# The customer API's answer written back. ON CONFLICT sees committed rows whatever the statement's snapshot:
# a customer erased since that answer has a tombstone here (apps/order/erasure.py), which this leaves erased.
_REMEMBER_CUSTOMER = DriverStatement(
    text("INSERT INTO order_known_customers (customer_id) VALUES (:customer_id) ON CONFLICT (customer_id) DO NOTHING")
)
# A checkout's order (apps/order/checkout_orders.py) is written by the order-saga group inside its batch's
# transaction, which commits later, after the batch's other events: an erasure whose UPDATEs ran meanwhile did
# not see it, and it kept its addresses for good (session 32, X). The saga reads the customer's row as the API's
# placements do and keeps the lock until its transaction ends (``hold_customer``).
_HOLD_CUSTOMER = DriverStatement(text(f"SELECT EXISTS ({_KNOWN_ROW}) AS customer_known"))


async def hold_customer(session: AsyncSession, customer_id: str) -> bool:
    """Whether an order of this customer may keep their personal data: False once the order service has
    applied (or is applying) their erasure. True leaves the known-customer row locked FOR SHARE until the
    caller's transaction ends, so an erasure reaching it waits for that transaction and its UPDATEs then see
    what it wrote; an erasure that got there first is waited for, and the locked read sees its tombstone.

    For the saga's checkout orders, whose customer the checkout service vouched for (a customer's cart is
    made only once the customer API knows them): a customer not known here yet is written known first
    (``_REMEMBER_CUSTOMER``), since a lock needs a row. A plain read cannot see a tombstone inserted after
    its statement's snapshot (the customer was never known here), but the insert's ON CONFLICT waits for it and
    the next statement's snapshot sees it; and an erasure arriving after this insert waits on it."""
    params = {"customer_id": customer_id}
    if (await _HOLD_CUSTOMER.fetch(session, params))[0]["customer_known"]:
        return True
    await _REMEMBER_CUSTOMER.fetch(session, params)
    return bool((await _HOLD_CUSTOMER.fetch(session, params))[0]["customer_known"])


# The catalog's answer, newer than what we hold; the version stays (an event newer than it still applies).
# Sorted by id, so two orders refreshing the same products lock them in the same order.
_REMEMBER_PRODUCTS = DriverStatement(
    text(
        """
    INSERT INTO order_known_products AS k (product_id, sku, name, price, currency, sellable, version, confirmed_at)
    SELECT t.id, t.sku, t.name, t.price, t.currency, true, 0, :confirmed_at
    FROM unnest(CAST(:ids AS uuid[]), CAST(:skus AS varchar[]), CAST(:names AS varchar[]),
                CAST(:prices AS numeric[]), CAST(:currencies AS varchar[])) AS t(id, sku, name, price, currency)
    ORDER BY t.id
    ON CONFLICT (product_id) DO UPDATE SET sku = excluded.sku, name = excluded.name, price = excluded.price,
        currency = excluded.currency, sellable = true, confirmed_at = excluded.confirmed_at
    WHERE k.confirmed_at < excluded.confirmed_at
    """
    )
)


_IN_FLIGHT: dict[tuple[object, ...], asyncio.Future[dict[uuid.UUID, CatalogPrice]]] = {}


@dataclass
class References:
    """Whether the customer exists and today's prices: from the read models, the services on a miss."""

    session: AsyncSession
    dependencies: Dependencies

    def guess(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, CatalogPrice] | None:
        """The products as this process last read or was told them, if it knows every one: what an order is
        priced with for ``place_if_known``, which checks them against the read models before writing."""
        try:
            return {product_id: _SEEN[product_id] for product_id in product_ids}
        except KeyError:
            return None

    async def place_if_known(
        self, params: Mapping[str, Any]
    ) -> tuple[tuple[list[int], dt.datetime] | None, Sequence[Mapping[str, Any]]]:
        """``PLACE_IF_KNOWN`` with the placement's parameters (apps/order/transitions.py placement_params): the
        items' ids and the saga's deadline if it wrote the order, else None and the lookup's rows for ``check``
        (none if the read models' tables are missing: ``check`` then looks up itself and asks the services)."""
        now = dt.datetime.now(dt.UTC)
        limit = max_age()
        try:
            rows = await PLACE_IF_KNOWN.fetch(self.session, {**params, "fresh_since": now - limit})
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != UNDEFINED_TABLE:
                raise
            await self.session.rollback()
            return None, []
        ids = rows[0]["item_ids"]
        if ids is None:
            return None, rows
        self._refresh_ahead(_ageing([r for r in rows if r["product_id"] is not None], now, limit))
        return (list(ids), rows[0]["deadline_at"]), rows

    async def place_checked(self, params: Mapping[str, Any]) -> tuple[list[int], dt.datetime] | None:
        """The order written by ``_PLACE_CHECKED`` with the placement's parameters: the items' ids and the saga's
        deadline, or None if the customer's row no longer says known (erased since ``check``). Without the read
        models' tables (a downgrade below order_0008 while we run: ``check`` asked the services) the write is
        ``_PLACE``'s."""
        try:
            rows = await _PLACE_CHECKED.fetch(self.session, params)
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != UNDEFINED_TABLE:
                raise
            await self.session.rollback()
            return await write_placement(self.session, params)
        ids, deadline_at = written(rows)
        return None if deadline_at is None else (ids, deadline_at)

    async def check(
        self,
        customer_id: uuid.UUID,
        product_ids: list[uuid.UUID],
        rows: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[bool, dict[uuid.UUID, CatalogPrice]]:
        """Whether the customer exists and the products' prices, from the read models' ``rows`` (looked up
        here when none are given), the services for what they lack."""
        now = dt.datetime.now(dt.UTC)
        if not rows:
            try:
                rows = await self._lookup(customer_id, product_ids)
            except ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) != UNDEFINED_TABLE:
                    raise
                # The tables are gone (a downgrade below order_0008 while we run): the services answer everything.
                await self.session.rollback()
                return await asyncio.gather(
                    self._ask_customer(customer_id, False), self._ask_catalog(list(dict.fromkeys(product_ids)))
                )
        customer_known = bool(rows[0]["customer_known"])
        limit = max_age()
        fresh = [r for r in rows if r["product_id"] is not None and is_fresh(r["confirmed_at"], now, limit)]
        prices = {r["product_id"]: _price(r) for r in fresh}
        _seen(prices)
        self._refresh_ahead(_ageing(fresh, now, limit))
        missing = [p for p in dict.fromkeys(product_ids) if p not in prices]
        if customer_known and not missing:
            return True, prices
        # The two calls run concurrently; the session then writes their answers one after the other.
        exists, (answered, led) = await asyncio.gather(
            self._ask_customer(customer_id, customer_known), self._ask_catalog_once(missing)
        )
        if exists and not customer_known:
            await _REMEMBER_CUSTOMER.fetch(self.session, {"customer_id": str(customer_id)})
        if answered and led:
            await self._remember(list(answered.values()), asked_at=now)
        _seen(answered)
        return exists, prices | answered

    async def _lookup(self, customer_id: uuid.UUID, product_ids: list[uuid.UUID]) -> Sequence[Mapping[str, Any]]:
        return await _LOOKUP.fetch(self.session, {"customer_id": str(customer_id), "product_ids": product_ids})

    async def _ask_customer(self, customer_id: uuid.UUID, known: bool) -> bool:
        return known or await self.dependencies.customer_exists(customer_id)

    async def _ask_catalog(self, missing: list[uuid.UUID]) -> dict[uuid.UUID, CatalogPrice]:
        return await self.dependencies.prices(missing) if missing else {}

    async def _ask_catalog_once(self, missing: list[uuid.UUID]) -> tuple[dict[uuid.UUID, CatalogPrice], bool]:
        """One catalog call per worker for the same products at a time: when a hot product's row expires,
        the orders in flight share the first one's call (its answer is at most the call's duration old)
        instead of each asking; True for the caller that made the call (it refreshes the rows)."""
        if not missing:
            return {}, False
        key = (asyncio.get_running_loop(), tuple(sorted(missing)))
        call = _IN_FLIGHT.get(key)
        led = call is None
        if call is None:
            call = _IN_FLIGHT[key] = asyncio.ensure_future(self._ask_catalog(missing))
            call.add_done_callback(lambda _: _IN_FLIGHT.pop(key, None))
        return await asyncio.shield(call), led

    async def _remember(self, answered: list[CatalogPrice], *, asked_at: dt.datetime) -> None:
        await _REMEMBER_PRODUCTS.fetch(self.session, _remembered(answered, asked_at))

    def _refresh_ahead(self, ageing: list[uuid.UUID]) -> None:
        """Rows still fresh but past ``AHEAD`` of their age limit are refreshed in the background, one call
        per worker at a time: an order then rarely finds its products expired and waits on the catalog
        (every order in flight while a hot product's row was refreshed did, each ``max_age`` seconds: the
        fixed-rate HTTP p99). What an order pays is unchanged: a price at most ``max_age`` old."""
        key = (asyncio.get_running_loop(), tuple(sorted(ageing)))
        bind = self.session.bind
        if not ageing or key in _REFRESHING or not isinstance(bind, AsyncEngine):
            return
        task = _REFRESHING[key] = asyncio.ensure_future(_refresh(self.dependencies, bind, ageing))
        task.add_done_callback(lambda _: _REFRESHING.pop(key, None))


_REFRESHING: dict[tuple[object, ...], asyncio.Future[None]] = {}
# A fresh row is refreshed ahead once this share of the age limit has passed (7 of 10 s): the catalog's
# answer has the rest (3 s) to arrive before any order would have to ask it itself.
AHEAD = 0.7


async def _refresh(dependencies: Dependencies, engine: AsyncEngine, product_ids: list[uuid.UUID]) -> None:
    asked_at = dt.datetime.now(dt.UTC)
    try:
        answered = await dependencies.prices(product_ids)
        if answered:
            async with AsyncSession(engine) as session:
                await _REMEMBER_PRODUCTS.fetch(session, _remembered(list(answered.values()), asked_at))
                await session.commit()
    except Exception as exc:  # nothing waits on it: the row expires, and the next order asks the catalog itself
        log.warning("product rows not refreshed ahead", extra={"error": type(exc).__name__})


# What this process last read of each product (``References.guess``): a guess only, never a price paid
# unchecked; ``PLACE_IF_KNOWN`` writes nothing unless the read models hold the same values, fresh.
_SEEN: dict[uuid.UUID, CatalogPrice] = {}
_SEEN_MAX = 10_000


def _seen(prices: Mapping[uuid.UUID, CatalogPrice]) -> None:
    if len(_SEEN) + len(prices) > _SEEN_MAX:  # a bound, not a policy: the next orders read them again
        _SEEN.clear()
    _SEEN.update(prices)


def _ageing(fresh: Sequence[Mapping[str, Any]], now: dt.datetime, limit: dt.timedelta) -> list[uuid.UUID]:
    """Of rows still fresh, the products past ``AHEAD`` of their age limit (``_refresh_ahead``)."""
    return [r["product_id"] for r in fresh if not is_fresh(r["confirmed_at"], now, limit * AHEAD)]


def _price(row: Mapping[str, Any]) -> CatalogPrice:
    return CatalogPrice(row["product_id"], row["sku"], row["name"], row["price"], row["currency"])


def _remembered(answered: list[CatalogPrice], asked_at: dt.datetime) -> dict[str, Any]:
    """_REMEMBER_PRODUCTS's parameters, sorted by id (two writers lock the rows in the same order)."""
    found = sorted(answered, key=lambda p: p.product_id)
    return {
        "ids": [p.product_id for p in found],
        "skus": [p.sku for p in found],
        "names": [p.name for p in found],
        "prices": [p.price for p in found],
        "currencies": [p.currency for p in found],
        "confirmed_at": asked_at,
    }
