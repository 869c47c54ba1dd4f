"""How every service API is served: uvicorn on httptools, with a bound on a request's head and on a stalled request.

uvicorn bounds neither (session 29, S): one anonymous request carrying 1,000,000 small headers (17 MB) held
the catalog's event loop for 1.4 s and left its worker 340 MB larger, a single 50 MB header blocked it for
1.9 s, and a connection that sends half a request is never closed. Litestar's own limit
(``request_max_body_size``, 1 MB) starts only once the head has been parsed. So, below the app:

- a request line and headers together of more than ``MAX_HEAD_BYTES`` (32 KiB; nginx's default is four 8 KiB
  header buffers, uvicorn's h11 parser 16 KiB) are answered ``431`` and the connection is closed;
- a connection that waits on its client for the rest of a request (no request yet, a head or a body
  begun) for ``STALL_TIMEOUT_S`` (15 s) without a byte is closed: ``408`` if no request has started, else
  closed (the app sees the client leave). Time the server spends not reading (its own back-pressure while the
  app has not consumed a body) does not count. Between requests uvicorn's keep-alive timeout (5 s) applies.
- the trailer fields after a chunked body are dropped, and more than ``MAX_HEAD_BYTES`` of them close the
  connection (session 31, S): uvicorn appended them to the request's header list, which the app reads once
  the body is in, so an ``Authorization`` or ``X-Forwarded-For`` that no proxy in front had seen reached the
  app as a header (RFC 9110 6.5.1: a trailer is never merged unless its field says it may; none of ours
  does), and the head's bound did not count them (1,000,000 trailer fields were kept);
- an HTTP/1.0 request carrying ``Transfer-Encoding`` is a 400 and the connection closes (RFC 9112 6.1: faulty
  framing; httptools decoded its chunks, where a 1.0 proxy in front would frame it otherwise).

A request that arrives whole in one read costs a few attribute tests more than uvicorn's own protocol.

The server itself (``QuietServer``) wakes once a second instead of uvicorn's ten times, and at once on SIGTERM.

Run: ``python -m apps.common.http_server apps.order.app:create_app --host 127.0.0.1 --port 8004 --workers 1``
(the stack does: ``infra/stack.py``); the app is a factory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from types import FrameType
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "STALL_TIMEOUT_S", "TICK_S", "BoundedHttpToolsProtocol", "QuietServer", "main"]

MAX_HEAD_BYTES: Final = 32 * 1024
STALL_TIMEOUT_S: Final = 15.0
# How a read can begin when the head's closing CRLF CRLF began in the read before it (longest first).
_END_TAILS: Final = (b"\n\r\n", b"\r\n", b"\n")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing an oversized head (431) and closing a stalled request."""

    max_head_bytes: int = MAX_HEAD_BYTES
    stall_timeout_s: float = STALL_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Between requests or inside a head: what arrives is counted against max_head_bytes. A chunk that
        # ends one request and begins the next is not counted, so the bound holds to within one read.
        self._in_head = True
        self._head_bytes = 0
        # A request begun and not yet received whole (its head or its body still to come).
        self._incomplete = False
        self._stall: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        # The current request's trailer fields so far (bytes, as on the wire), and whether they ran over.
        self._trailer_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_data = self.loop.time()
        self._arm(self.stall_timeout_s)  # a connection that never sends a request

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # closing: what else the client sends is not parsed
        if self._in_head:
            counted = self._head_bytes + len(data)
            if counted > self.max_head_bytes:
                # Judged before the parser sees it; this read may hold the head's end and a body, and
                # the blank line that ends the head may have begun in the read before.
                end = data.find(b"\r\n\r\n") + 4
                if end == 3:
                    end = next((len(tail) for tail in _END_TAILS if data.startswith(tail)), 0)
                if not end or self._head_bytes + end > self.max_head_bytes:
                    self._answer_and_close(431, "Request header fields too large.")
                    return
            self._head_bytes = counted
            self._incomplete = True
        super().data_received(data)
        if self._incomplete or self.cycle is None:
            self._last_data = self.loop.time()
            if self._stall is None:
                self._arm(self.stall_timeout_s)
        elif self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            super().on_header(name, value)
            return
        # A trailer field (after a chunked body): the request's header list is the app's, never added to.
        self._trailer_bytes += len(name) + len(value) + 4
        if self._trailer_bytes > self.max_head_bytes and not self._refused:
            self._refused = True
            self._answer_and_close(431, "Request header fields too large.")

    def on_headers_complete(self) -> None:
        self._in_head, self._trailer_bytes = False, 0
        if self.parser.get_http_version() == "1.0" and any(name == b"transfer-encoding" for name, _ in self.headers):
            # RFC 9112 6.1: faulty framing in HTTP/1.0 (a 1.0 proxy in front frames it otherwise: a smuggling
            # pair). Raised from the parser's callback, it is uvicorn's own "Invalid HTTP request" 400 and close.
            raise ValueError("Transfer-Encoding in an HTTP/1.0 request")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._refused:
            return  # the app waiting on the body sees the client leave, not a body ended by refused trailers
        self._in_head, self._head_bytes, self._incomplete = True, 0, False
        super().on_message_complete()

    def _arm(self, delay: float) -> None:
        self._stall = self.loop.call_later(delay, self._stalled)

    def _stalled(self) -> None:
        self._stall = None
        if self.transport.is_closing() or not (self._incomplete or self.cycle is None):
            return
        now = self.loop.time()
        busy = self._in_head and self.cycle is not None and not self.cycle.response_complete
        if self.flow.read_paused or busy:
            # Waiting on ourselves, not on the client: the app has not taken the body yet, or is still
            # answering the request before the one whose head is coming.
            self._last_data = now
        idle = now - self._last_data
        if idle < self.stall_timeout_s:
            self._arm(self.stall_timeout_s - idle)
        elif self._in_head:
            self._answer_and_close(408, "Request timeout.")
        else:
            self.transport.close()  # the app, waiting on the body, sees the client leave

    def _answer_and_close(self, status: int, message: str) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # an answer to the request before is under way: nothing to add to it
            return
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = message.encode("ascii")
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join([*head, body]))
        self.transport.close()


TICK_S: Final = 1.0
# uvicorn.main's exit status for an app that did not start.
_STARTUP_FAILURE: Final = 3


class QuietServer(uvicorn.Server):
    """uvicorn's server, its housekeeping tick once a second instead of every 100 ms.

    uvicorn's main loop sleeps 0.1 s between ticks only to notice that its signal handler asked it to exit;
    it refreshes the Date header on every tenth tick, and no setting changes that. Ten wake-ups a second in
    every idle API, on their event loop's thread. Here the tick waits ``TICK_S``, the Date header is refreshed
    on each (as fresh as uvicorn's: at most a second old), and the signal handler wakes the loop at once, so a
    SIGTERM is acted on no later than before."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Future[None] | None = None

    async def main_loop(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # uvicorn's: a multiple of 10 refreshes the Date header
            self._woken = woken = loop.create_future()
            timer = loop.call_later(TICK_S, _wake, woken)
            if self.should_exit:  # asked before this wait's future existed
                _wake(woken)
            await woken
            timer.cancel()
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._woken is not None:
            # A Python signal handler runs on the main thread between two bytecodes, maybe inside the loop's
            # own code: handing the wake-up over thread-safely also wakes a loop blocked in its poll.
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is down already
                self._loop.call_soon_threadsafe(_wake, self._woken)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a service API (an app factory) under uvicorn, bounded.")
    parser.add_argument("app", help="an app factory, module:function")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "factory": True,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "access_log": False,  # apps.common.logs writes our own, one JSON line per request
        "http": "apps.common.http_server:BoundedHttpToolsProtocol",  # by name: each worker process imports it
    }
    if args.workers > 1:
        # uvicorn's supervisor builds each worker's Server itself: those keep uvicorn's 100-ms tick.
        uvicorn.run(args.app, **options)
        return
    # uvicorn.run's one-process path, with QuietServer for its Server.
    server = QuietServer(uvicorn.Config(args.app, **options))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


if __name__ == "__main__":
    main()
