"""The cart view cache (apps/checkout/cache.py) across a Redis that loses its data: a reader that read the
cart's generation, then the database, fills only if no committed change came in between, even when Redis
restarted in between (the stack's Redis keeps nothing on disk) or could not be read at all.

Redis is a fake on a dict whose EVAL runs the cache's own Lua (Lua 5.1, as Redis does) with ``redis.call``
answered by the dict; ``restart()`` forgets everything, as the stack's Redis does. Each CartCache is one
process: a writer's invalidation it could not send stays in that process, so reader and writer are two.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from lupa.lua51 import LuaRuntime  # type: ignore[import-untyped]
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.checkout.cache import CachedCart, CartCache
from apps.checkout.schemas import CartOut
from apps.common.redis_store import RedisStore

VIEW_TTL = dt.timedelta(minutes=5)


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.down = False
        self.lua = LuaRuntime()

    def restart(self) -> None:
        self.hashes.clear()
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise RedisConnectionError("Connection refused")

    # -- commands, as redis-py's client answers them (bytes, None) -----------------------------------------

    async def eval(self, script: str, numkeys: int, *keys_and_args: object) -> Any:
        self._up()
        return self._eval(script, numkeys, *keys_and_args)

    async def hmget(self, key: str, fields: list[str]) -> list[bytes | None]:
        self._up()
        return [_bytes(self.hashes.get(key, {}).get(f)) for f in fields]

    async def delete(self, *keys: str) -> int:
        self._up()
        return sum(self.hashes.pop(k, None) is not None for k in keys)

    async def getex(self, key: str, ex: object = None) -> None:
        self._up()

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    # -- EVAL: the script's Lua with redis.call on the dict ------------------------------------------------

    def _eval(self, script: str, numkeys: int, *keys_and_args: object) -> Any:
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in keys_and_args]
        keys, argv = self.lua.table_from(values[:numkeys]), self.lua.table_from(values[numkeys:])
        run = self.lua.eval(f"function(redis, KEYS, ARGV)\n{script}\nend")
        return _from_lua(run(self.lua.table_from({"call": self._call}), keys, argv))

    def _call(self, command: str, key: str, *args: str) -> Any:
        fields = self.hashes.setdefault(key, {})
        try:
            match command.upper():
                case "HGET":
                    return fields.get(args[0], False)  # a nil reply is false in Redis's Lua
                case "HMGET":
                    return self.lua.table_from([fields.get(f, False) for f in args])
                case "HSET":
                    fields.update(zip(args[::2], args[1::2], strict=True))
                    return len(args) // 2
                case "HINCRBY":
                    fields[args[0]] = str(int(fields.get(args[0], "0")) + int(args[1]))
                    return int(fields[args[0]])
                case "HDEL":
                    return sum(fields.pop(f, None) is not None for f in args)
                case "PEXPIRE":
                    return 1
            raise AssertionError(f"the fake has no {command}")
        finally:
            if not fields:
                del self.hashes[key]


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.calls: list[Callable[[], Any]] = []

    def eval(self, script: str, numkeys: int, *keys_and_args: object) -> None:
        self.calls.append(lambda: self.redis._eval(script, numkeys, *keys_and_args))

    def hmget(self, key: str, fields: list[str]) -> None:
        self.calls.append(lambda: [_bytes(self.redis.hashes.get(key, {}).get(f)) for f in fields])

    def getex(self, key: str, ex: object = None) -> None:
        self.calls.append(lambda: None)

    async def execute(self) -> list[Any]:
        self.redis._up()
        return [call() for call in self.calls]


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _from_lua(value: Any) -> Any:
    """Redis's conversion of a script's answer: false is nil, a table an array, a string bulk bytes."""
    if value is False or value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool | int | float):
        return int(value)
    return [_from_lua(v) for v in value.values()]


def process(redis: FakeRedis) -> CartCache:
    return CartCache(RedisStore(cast("Any", redis), cooldown_s=0), view_ttl=VIEW_TTL, guest_ttl=dt.timedelta(days=7))


def cart_view(cart_id: uuid.UUID, subtotal: str) -> CachedCart:
    at = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    view = CartOut(
        id=cart_id,
        session_id="cs_x",
        customer_id=None,
        status="active",
        items=[],
        subtotal=Decimal(subtotal),
        currency=None,
        expires_at=None,
        created_at=at,
        updated_at=at,
    )
    return CachedCart(view=view, guest_token_hash=None, guest_expires_at=None)


async def served(cache: CartCache, cart_id: uuid.UUID) -> str | None:
    cached = (await cache.read(cart_id, None)).cached
    return None if cached is None else str(cached.view.subtotal)


async def test_a_fill_read_before_an_invalidation_and_a_restart_is_refused() -> None:
    redis, cart_id = FakeRedis(), uuid.uuid4()
    reader, writer = process(redis), process(redis)
    read = await reader.read(cart_id, None)  # a reader misses and reads the database: subtotal 1.00 ...
    await writer.invalidate(cart_id)  # ... a writer commits 2.00 and invalidates ...
    redis.restart()  # ... Redis restarts, empty ...
    await reader.fill(cart_id, read.generation, cart_view(cart_id, "1.00"))  # ... and the reader fills late
    assert await served(reader, cart_id) is None, "the view from before the change was refused"
    again = await reader.read(cart_id, None)
    await reader.fill(cart_id, again.generation, cart_view(cart_id, "2.00"))
    assert await served(writer, cart_id) == "2.00", "the next reader fills the cache again"


async def test_a_fill_read_before_a_restart_and_an_invalidation_is_refused() -> None:
    redis, cart_id = FakeRedis(), uuid.uuid4()
    reader, writer = process(redis), process(redis)
    await writer.invalidate(cart_id)  # an earlier change: the key has a generation already
    read = await reader.read(cart_id, None)  # a reader misses and reads the database: 1.00 ...
    redis.restart()  # ... Redis restarts, empty ...
    await writer.invalidate(cart_id)  # ... a writer commits 2.00 and invalidates ...
    await reader.fill(cart_id, read.generation, cart_view(cart_id, "1.00"))  # ... and the reader fills late
    assert await served(reader, cart_id) is None, "the view from before the change was refused"


async def test_a_reader_that_could_not_read_redis_fills_nothing() -> None:
    redis, cart_id = FakeRedis(), uuid.uuid4()
    reader, writer = process(redis), process(redis)
    redis.down = True
    read = await reader.read(cart_id, None)  # Redis down: the reader reads the database: 1.00 ...
    await writer.invalidate(cart_id)  # ... a writer commits 2.00; its invalidation waits in its process ...
    redis.restart()  # ... Redis is back, empty ...
    await reader.fill(cart_id, read.generation, cart_view(cart_id, "1.00"))  # ... and the reader fills
    assert await served(reader, cart_id) is None, "a reader that never saw a generation stores nothing"


async def test_without_a_restart_a_miss_fills_and_a_racing_writer_still_wins() -> None:
    redis, cart_id = FakeRedis(), uuid.uuid4()
    reader, writer = process(redis), process(redis)
    read = await reader.read(cart_id, None)
    await reader.fill(cart_id, read.generation, cart_view(cart_id, "1.00"))
    assert await served(writer, cart_id) == "1.00"
    await writer.invalidate(cart_id)
    assert await served(reader, cart_id) is None
    late = await reader.read(cart_id, None)
    raced = await reader.read(cart_id, None)
    assert late.generation == raced.generation, "a key's generation stays until a change"
    await writer.invalidate(cart_id)
    await reader.fill(cart_id, late.generation, cart_view(cart_id, "1.00"))
    assert await served(reader, cart_id) is None, "a fill that raced a writer is refused"
