"""The rate limit's own Redis wire protocol (apps/common/redis_protocol.py): commands encoded byte for byte
as redis-py encodes them, replies parsed however the socket splits them."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError

from apps.common.redis_protocol import RedisReplies, _Incomplete, encode_command, parse_reply

pytestmark = pytest.mark.unit

REPLIES: list[tuple[bytes, Any]] = [
    (b":42\r\n", 42),
    (b":-3\r\n", -3),
    (b"+OK\r\n", "OK"),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*2\r\n:3\r\n:4999\r\n", [3, 4999]),
    (b"*3\r\n*1\r\n:1\r\n$2\r\nab\r\n*0\r\n", [[1], b"ab", []]),
]


@pytest.mark.parametrize(("wire", "value"), REPLIES)
def test_each_reply_kind_is_read_whole_and_says_where_the_next_starts(wire: bytes, value: Any) -> None:
    assert parse_reply(wire + b":7\r\n") == (value, len(wire))


def test_error_replies_are_values_and_noscript_is_told_apart() -> None:
    noscript, _ = parse_reply(b"-NOSCRIPT No matching script.\r\n")
    other, _ = parse_reply(b"-ERR wrong number of arguments\r\n")
    assert isinstance(noscript, NoScriptError)
    assert isinstance(other, ResponseError) and not isinstance(other, NoScriptError)
    assert str(other) == "ERR wrong number of arguments"


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 1, "ratelimit:order:x:n", 50, 5000),
        ("EVAL", "return {1, 2}\n", 0),
        ("CLIENT", "ID"),
        ("SET", b"k\r\nv", "v\u00e9", 1.5),
    ],
)
def test_commands_are_the_bytes_redis_py_sends(args: tuple[bytes | str | int | float, ...]) -> None:
    packed = b"".join(Connection().pack_command(*args))
    assert encode_command(args) == packed


def test_values_redis_would_misread_are_refused() -> None:
    for bad in (None, True, ["a"]):
        with pytest.raises(TypeError):
            encode_command(("SET", "k", bad))


class _FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _connected() -> tuple[RedisReplies, _FakeTransport]:
    replies, transport = RedisReplies(), _FakeTransport()
    replies.connection_made(transport)  # type: ignore[arg-type]
    return replies, transport


async def test_replies_split_anywhere_reach_their_callers_in_order() -> None:
    """Byte by byte, then all at once: each caller gets its own reply; a caller that gave up still takes
    its reply, so the ones after it are not shifted."""
    wire = b"*2\r\n:1\r\n:5000\r\n-ERR boom\r\n$3\r\nabc\r\n:9\r\n"
    for chunks in ([wire[i : i + 1] for i in range(len(wire))], [wire]):
        replies, transport = _connected()
        waiters = [replies.send(encode_command(("PING",))) for _ in range(4)]
        waiters[2].cancel()
        for chunk in chunks:
            replies.data_received(chunk)
        assert waiters[0].result() == [1, 5000]
        assert isinstance(waiters[1].result(), ResponseError)
        assert waiters[3].result() == 9
        assert len(transport.written) == 4


async def test_a_lost_connection_fails_every_waiter_and_takes_no_more_commands() -> None:
    replies, _ = _connected()
    waiters = [replies.send(b"*1\r\n$4\r\nPING\r\n") for _ in range(2)]
    replies.connection_lost(None)
    for waiter in waiters:
        with pytest.raises(RedisConnectionError):
            await waiter
    with pytest.raises(RedisConnectionError):
        replies.send(b"*1\r\n$4\r\nPING\r\n")


async def test_garbage_fails_the_waiters_and_closes_the_connection() -> None:
    replies, transport = _connected()
    waiter = replies.send(b"*1\r\n$4\r\nPING\r\n")
    replies.data_received(b"?what\r\n")
    with pytest.raises(InvalidResponse):
        await waiter
    assert transport.closed and replies.lost


def test_an_unfinished_reply_waits_for_more() -> None:
    for partial in (b"", b":1", b"$5\r\nhel", b"*2\r\n:1\r\n"):
        with pytest.raises(_Incomplete):
            parse_reply(partial)


def test_a_closing_transport_takes_no_command_before_the_loop_reports_it_lost() -> None:
    """The loop may see the server's close a turn before ``connection_lost``: the connection is not usable
    then (the caller connects afresh instead of writing into it)."""
    replies, transport = _connected()
    before = replies.usable  # a copy: mypy would keep replies.usable narrowed to True past the close
    assert before
    transport.closed = True
    assert not replies.usable and not replies.lost
    with pytest.raises(RedisConnectionError):
        replies.send(b"*1\r\n$4\r\nPING\r\n")
