"""The checkout service's Redis keys: cached cart views and guest sessions. PostgreSQL stays the truth.

``checkout:cart:{cart_id}`` (hash, TTL = cart view TTL)
    ``gen``: a random number the first reader that finds none writes, before its database read;
    ``view``: the cart as JSON, stored only if ``gen`` is still the one that reader read (a Lua
    check-and-set). Every committed change of the cart deletes the key, so a reader that raced a writer
    can never put back a view older than the writer's change; nor can one whose key Redis lost meanwhile
    (a restart: the stack's Redis keeps nothing on disk), as a missing ``gen`` refuses every fill and the
    next one is drawn afresh, never one an earlier reader could hold (docs/decisions.md, "Cart views
    across a Redis restart").
``checkout:guest:{sha256(token)}`` (string -> cart id, sliding TTL = cart idle time)
    A guest's session: every use pushes its expiry out (GETEX ... EX).

Every command goes through ``RedisStore.run``: with Redis down, reads come from PostgreSQL and an
invalidation that could not be sent is retried on the next command that reaches Redis.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, cast

import msgspec
from prometheus_client import Counter

from apps.checkout.schemas import CartOut

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from apps.common.redis_store import RedisStore

CART_CACHE = Counter("checkout_cart_cache", "Cart view reads by cache outcome", ["outcome"])

# KEYS[1] cart key; ARGV: a new generation, TTL in ms. {gen, view}; a key without one gets ARGV[1].
_READ: Final = """
local found = redis.call('HMGET', KEYS[1], 'gen', 'view')
if found[1] then
  return found
end
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {ARGV[1], false}
"""
# KEYS[1] cart key; ARGV: generation read before the database read, view JSON, TTL in ms. A key Redis
# lost (restart, flush, expiry) has no generation and takes no fill.
_FILL_IF_CURRENT: Final = """
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'view', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""


def new_generation() -> str:
    """Random, so one drawn after a restart matches no reader's from before it; below 2**62, so an older
    process's invalidation (HINCRBY on ``gen``) still applies to it."""
    return str(secrets.randbelow(2**62) + 1)


class CachedCart(msgspec.Struct, kw_only=True):
    """A cart view plus what an access check needs, so a hit needs no database read."""

    view: CartOut
    guest_token_hash: str | None
    guest_expires_at: dt.datetime | None


_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(CachedCart)


def cart_key(cart_id: uuid.UUID) -> str:
    return f"checkout:cart:{cart_id}"


def guest_key(token_hash: str) -> str:
    return f"checkout:guest:{token_hash}"


@dataclass(frozen=True, slots=True)
class CartRead:
    cached: CachedCart | None
    generation: str | None  # to pass to fill(); None when Redis could not be read (then no fill)
    guest_session_cart: str | None  # the cart id the guest key maps to (None: missing or Redis down)


@dataclass
class CartCache:
    store: RedisStore
    view_ttl: dt.timedelta
    guest_ttl: dt.timedelta
    _pending: set[uuid.UUID] = field(default_factory=set)

    async def read(self, cart_id: uuid.UUID, token_hash: str | None) -> CartRead:
        """The cached view and, for a guest, the session key (touched: its TTL slides) in one round trip."""
        await self._flush_pending()
        ttl_ms = int(self.view_ttl.total_seconds() * 1000)

        async def command(client: Redis) -> list[object]:
            pipe = client.pipeline(transaction=False)
            pipe.eval(_READ, 1, cart_key(cart_id), new_generation(), ttl_ms)
            if token_hash is not None:
                pipe.getex(guest_key(token_hash), ex=self.guest_ttl)
            return list(await pipe.execute())

        result = await self.store.run(command, "read cart")
        if result is None:
            CART_CACHE.labels("unavailable").inc()
            return CartRead(None, None, None)
        gen, view = cast("list[bytes | None]", result[0])
        guest = result[1] if token_hash is not None else None
        cached = _decode.decode(view) if view else None
        CART_CACHE.labels("hit" if cached else "miss").inc()
        return CartRead(cached, cast("bytes", gen).decode(), guest.decode() if isinstance(guest, bytes) else None)

    async def fill(self, cart_id: uuid.UUID, generation: str | None, cached: CachedCart) -> None:
        if generation is None:
            return
        ttl_ms = int(self.view_ttl.total_seconds() * 1000)

        async def command(client: Redis) -> object:
            return await client.eval(_FILL_IF_CURRENT, 1, cart_key(cart_id), generation, _encode(cached), ttl_ms)

        await self.store.run(command, "fill cart view")

    async def invalidate(self, cart_id: uuid.UUID) -> None:
        """After a committed change; if Redis cannot be told now, it is told on the next command."""
        self._pending.add(cart_id)
        await self._flush_pending()

    async def _flush_pending(self) -> None:
        if not self._pending or self.store.cooling_down:
            return
        pending = list(self._pending)

        async def command(client: Redis) -> object:
            return await client.delete(*(cart_key(cart_id) for cart_id in pending))

        if await self.store.run(command, "invalidate cart views") is not None:
            self._pending.difference_update(pending)

    async def guest_session_cart(self, token_hash: str) -> str | None:
        """The cart id a live guest session maps to (and its TTL slides); None if gone or Redis is down."""

        async def command(client: Redis) -> object:
            return await client.getex(guest_key(token_hash), ex=self.guest_ttl)

        value = await self.store.run(command, "touch guest session")
        return value.decode() if isinstance(value, bytes) else None

    async def start_guest_session(self, token_hash: str, cart_id: uuid.UUID) -> None:
        async def command(client: Redis) -> object:
            return await client.set(guest_key(token_hash), str(cart_id), ex=self.guest_ttl)

        await self.store.run(command, "start guest session")
