"""What one connection can make a service API hold (session 29, S): uvicorn's httptools protocol bounded no
request head (1,000,000 headers, 17 MB, held the catalog's loop 1.4 s and grew its worker by 340 MB) and
closed no half-sent request. apps.common.http_server serves every API; here it serves a small app on a free
port in this process, with the stack's own launch line checked to use it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from litestar import Litestar, Request, get, post

from apps.common import http_server
from apps.common.http_server import MAX_HEAD_BYTES, BoundedHttpToolsProtocol

pytestmark = pytest.mark.unit


@get("/ping", sync_to_thread=False)
def ping() -> str:
    return "pong"


@post("/echo")
async def echo(request: Request[Any, Any, Any]) -> dict[str, int]:
    return {"received": len(await request.body())}


@post("/seen")
async def seen(request: Request[Any, Any, Any]) -> list[str]:
    """The header names the app sees once the body (and any trailer after it) has been read."""
    await request.body()
    return sorted({name.decode("latin-1") for name, _ in request.scope["headers"]})


class _Short(BoundedHttpToolsProtocol):
    stall_timeout_s = 0.5


@contextlib.asynccontextmanager
async def serving(protocol: type[BoundedHttpToolsProtocol] = BoundedHttpToolsProtocol) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(Litestar([ping, echo, seen]), http=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()


async def exchange(port: int, request: bytes, wait: float = 5.0) -> bytes:
    """Send request, return what the server sends until it closes or wait passes; RESET if the server
    closed on a request it had not read whole (the kernel then resets, and may drop the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(request)
        await writer.drain()
    except ConnectionResetError:
        return b"RESET"
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                received += chunk
                if b"connection: close" not in received and received.endswith(b"pong"):
                    break
    writer.close()
    return received or b"RESET"


def head(headers: int, filler: int = 0) -> bytes:
    lines = b"".join(b"x-s29-%d: v\r\n" % i for i in range(headers))
    big = b"x-big: " + b"a" * filler + b"\r\n" if filler else b""
    return b"GET /ping HTTP/1.1\r\nhost: t\r\n" + lines + big + b"\r\n"


async def test_an_oversized_head_is_a_431_and_the_connection_closes() -> None:
    async with serving() as port:
        for oversized in (
            head(1_000_000),
            head(0, filler=10 * MAX_HEAD_BYTES),
            b"GET /ping?" + b"q" * (2 * MAX_HEAD_BYTES) + b" HTTP/1.1\r\nhost: t\r\n\r\n",
        ):
            answer = await exchange(port, oversized)
            # httptools itself refuses a URL past 64 KiB (400); a reset is the kernel's answer to a close
            # with unread bytes.
            assert answer[:13] in (b"HTTP/1.1 431 ", b"HTTP/1.1 400 ") or answer == b"RESET", answer[:40]
        # Read whole before it is judged, a head just over the bound gets its 431 rather than a reset.
        assert (await exchange(port, head(0, filler=MAX_HEAD_BYTES + 1024))).startswith(b"HTTP/1.1 431 ")
        # The server is still there, and a head just under the bound (a long token, a hundred headers) passes.
        assert (await exchange(port, head(100, filler=MAX_HEAD_BYTES - 4096))).startswith(b"HTTP/1.1 200 ")


async def flooded(port: int, flood: bytes) -> tuple[bytes, float]:
    """Send ``flood`` on one connection and, until it is answered, small requests on others: the flood's
    answer and the longest any small one waited."""
    sending = asyncio.create_task(exchange(port, flood))
    worst = 0.0
    while not sending.done():
        started = time.monotonic()
        assert (await exchange(port, head(1))).startswith(b"HTTP/1.1 200 ")
        worst = max(worst, time.monotonic() - started)
    return await sending, worst


async def test_the_loop_is_not_held_by_a_flood_of_headers() -> None:
    async with serving() as port:
        answer, worst = await flooded(port, head(1_000_000))
        assert answer.startswith(b"HTTP/1.1 431 ") or answer == b"RESET", answer[:40]
        assert worst < 0.25, f"a normal request waited {worst:.2f} s"


async def test_a_body_in_many_reads_and_pipelined_requests_still_pass() -> None:
    async with serving(_Short) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"k": "' + b"v" * 200_000 + b'"}'
        writer.write(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 50_000):  # slower than one read, faster than the stall bound
            writer.write(body[start : start + 50_000])
            await writer.drain()
            await asyncio.sleep(0.2)
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 201 ")
        writer.close()
        two = await exchange(port, head(1) + head(1), wait=2.0)
        assert two.count(b"HTTP/1.1 200 ") == 2


@pytest.mark.parametrize("split", [1, 2, 3])
async def test_a_head_whose_end_straddles_two_reads_is_not_taken_for_a_big_one(split: int) -> None:
    """The blank line ending the head arrives in two reads, the second bringing a body larger than the bound."""
    async with serving(_Short) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"k": "' + b"v" * (2 * MAX_HEAD_BYTES) + b'"}'
        first = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        first += b"content-length: %d\r\n\r\n" % len(body)
        writer.write(first[:-split])
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(first[-split:] + body)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 201 ")
        writer.close()


@pytest.mark.parametrize(
    ("label", "sent", "answer"),
    [
        ("nothing", b"", b"HTTP/1.1 408 "),
        ("half a head", b"GET /ping HTTP/1.1\r\nhost: t\r\n", b"HTTP/1.1 408 "),
        ("half a body", b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{", b""),
    ],
)
async def test_a_stalled_request_is_closed(label: str, sent: bytes, answer: bytes) -> None:
    async with serving(_Short) as port:
        started = time.monotonic()
        received = await exchange(port, sent, wait=5.0)
        took = time.monotonic() - started
        assert received.startswith(answer), (label, received[:40])
        assert 0.4 < took < 3.0, (label, took)


def test_the_stack_serves_every_api_with_the_bounded_protocol() -> None:
    from infra.stack import app_processes

    apis = [p for p in app_processes() if p.name.endswith("-api")]
    assert apis
    for process in apis:
        assert process.argv[1:3] == ["-m", http_server.__name__], process.argv


def chunked(trailers: bytes) -> bytes:
    return (
        b"POST /seen HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n" + trailers + b"\r\n"
    )


async def test_a_trailer_is_not_a_header() -> None:
    """uvicorn appended a chunked body's trailer fields to the request's header list (session 31, S): an
    Authorization, X-Forwarded-For or X-Guest-Token no proxy in front had seen reached the app as a header.
    RFC 9110 6.5.1: a trailer is not merged into the header section unless its field allows it; none here does."""
    async with serving() as port:
        answer = await exchange(port, chunked(b"authorization: Bearer x\r\nx-forwarded-for: 10.9.9.9\r\n"), 2.0)
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:60]
        names = answer.partition(b"\r\n\r\n")[2]
        assert b"host" in names and b"transfer-encoding" in names
        assert b"authorization" not in names and b"x-forwarded-for" not in names, names


async def test_a_flood_of_trailers_is_bounded_like_a_head() -> None:
    """The 32 KiB bound counted the head only: 1,000,000 trailer fields after a chunked body were parsed and
    kept (the app's header list) like the 1,000,000 headers of session 29."""
    flood = chunked(b"".join(b"x-t%d: v\r\n" % i for i in range(1_000_000)))
    async with serving() as port:
        answer, worst = await flooded(port, flood)
        assert answer[:13] in (b"HTTP/1.1 431 ", b"HTTP/1.1 400 ") or answer == b"RESET", answer[:40]
        assert worst < 0.25, f"a normal request waited {worst:.2f} s"
        # Trailers under the bound are dropped, and the request is answered.
        small = chunked(b"".join(b"x-t%d: v\r\n" % i for i in range(100)))
        assert (await exchange(port, small, 2.0)).startswith(b"HTTP/1.1 201 ")


async def test_a_transfer_encoding_in_http_1_0_is_faulty_framing() -> None:
    """RFC 9112 6.1: an HTTP/1.0 message carrying Transfer-Encoding is treated as faulty framing (a proxy that
    speaks 1.0 reads its body by Content-Length or to the close, the server by chunks: a smuggling pair).
    httptools decoded the chunks and the app answered (session 31, S)."""
    async with serving() as port:
        for version in (b"1.0", b"1.1"):
            request = chunked(b"").replace(b"HTTP/1.1", b"HTTP/" + version)
            answer = await exchange(port, request, 2.0)
            expected = b"HTTP/1.1 400 " if version == b"1.0" else b"HTTP/1.1 201 "
            assert answer.startswith(expected), (version, answer[:60])
        assert (await exchange(port, head(1).replace(b"HTTP/1.1", b"HTTP/1.0"), 2.0)).startswith(b"HTTP/1.1 200 ")
