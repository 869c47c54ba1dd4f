"""Redis's wire protocol (RESP2) for a client that writes commands straight to a socket: the rate limit's
count (apps/common/redis_store.py ``OwnConnectionScript``). Commands are encoded as redis-py encodes them;
replies are parsed as they arrive, several per read when they come together."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError

__all__ = ["RedisReplies", "encode_command", "handshake", "parse_reply"]


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def encode_command(args: Sequence[object]) -> bytes:
    """A command in RESP (an array of bulk strings), as redis-py sends it."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send a {type(arg).__name__} to Redis")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buffer: bytes | bytearray, position: int = 0) -> tuple[Any, int]:
    """One RESP2 reply from ``position``: (value, where the next one starts). An error reply is returned as
    its exception (``NoScriptError`` for NOSCRIPT), not raised: it answers one command, the connection is fine.
    Raises ``_Incomplete`` if the buffer ends inside the reply."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        raise _Incomplete
    kind, line, after = buffer[position : position + 1], bytes(buffer[position + 1 : end]), end + 2
    if kind == b":":
        return int(line), after
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        text = line.decode(errors="replace")
        return (NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _Incomplete
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse_reply(buffer, after)
            items.append(item)
        return items, after
    raise InvalidResponse(f"unexpected reply type {kind!r}")


class RedisReplies(asyncio.Protocol):
    """One connection to Redis: each command is written as it comes and its caller waits on a future; Redis
    answers a connection's commands in the order they were sent, so each reply goes to the oldest waiter.
    A waiter that gave up (timed out, cancelled) still takes its reply, so the others stay matched."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._buffer = bytearray()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (uvicorn runs on uvloop): no isinstance.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        position = 0
        try:
            while self._waiting and position < len(buffer):
                reply, position = parse_reply(buffer, position)
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(reply)
        except _Incomplete:
            pass
        except (ValueError, InvalidResponse) as exc:  # garbage: nothing after it can be trusted
            self._fail(InvalidResponse(f"unreadable reply from Redis: {exc}"))
            self.close()
            return
        del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis closed the connection{f': {exc}' if exc else ''}"))

    def _fail(self, error: Exception) -> None:
        self.lost = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    @property
    def usable(self) -> bool:
        """Open for commands: not lost, and not closing (the loop may have seen the server's close a turn
        before it tells ``connection_lost``)."""
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """The future of this command's reply (an error reply is its exception object, as a value)."""
        transport = self.transport
        if transport is None or not self.usable:
            raise RedisConnectionError("the connection to Redis is closed")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        transport.write(payload)
        return waiter

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


def handshake(pool: ConnectionPool) -> list[tuple[object, ...]]:
    """What a new connection made with this pool's settings sends first (RESP2): AUTH, SELECT. A pool whose
    connections this client cannot make (TLS, a custom class) is refused at start-up: failing open on every
    request instead would switch the limit off."""
    cls = pool.connection_class
    if issubclass(cls, SSLConnection) or cls not in (Connection, UnixDomainSocketConnection):
        raise ValueError(f"the rate limit's own Redis connection speaks plain TCP or a Unix socket, not {cls.__name__}")
    settings = pool.connection_kwargs
    commands: list[tuple[object, ...]] = []
    password, username = settings.get("password"), settings.get("username")
    if password:
        commands.append(("AUTH", username, password) if username else ("AUTH", password))
    if settings.get("db"):
        commands.append(("SELECT", settings["db"]))
    return commands
