"""A TCP stand-in for PostgreSQL that a test switches between the ways a database refuses connections.

    async with PgFaultProxy() as proxy:          # listens on proxy.port; starts in mode "refuse"
        proxy.mode = "starting_up"               # FATAL 57P03, as PostgreSQL answers during its start
        proxy.mode = "forward"                   # a plain pipe to the real server

Modes: "refuse" closes the listening socket (connection refused), "starting_up" and "too_many" answer the
startup packet with PostgreSQL's own FATAL ErrorResponse (SQLSTATE 57P03 / 53300), "forward" pipes bytes
to the real server. Only the consumer under test connects through it; the real database is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

from apps.common.topology import pg_host, pg_port

Mode = Literal["refuse", "starting_up", "too_many", "forward"]

_FATAL = {
    "starting_up": ("57P03", "the database system is starting up"),
    "too_many": ("53300", "sorry, too many clients already"),
}
_SSL_REQUEST = 80877103


def _error_response(sqlstate: str, message: str) -> bytes:
    parts = ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    fields = b"".join(code + value.encode() + b"\0" for code, value in parts)
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgFaultProxy:
    def __init__(self) -> None:
        self.port = free_port()
        self._mode: Mode = "refuse"
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> PgFaultProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close_server()
        for task in list(self._pipes):
            task.cancel()

    @property
    def mode(self) -> Mode:
        return self._mode

    async def set_mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "refuse":
            await self._close_server()
        elif self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            if self._mode == "forward":
                await self._forward(reader, writer)
            elif self._mode in _FATAL:
                await self._refuse_startup(reader, writer, *_FATAL[self._mode])
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pipes.discard(task)
            writer.close()

    async def _refuse_startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sqlstate: str, message: str
    ) -> None:
        while True:
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            packet = await reader.readexactly(length - 4)
            if struct.unpack("!I", packet[:4])[0] == _SSL_REQUEST:
                writer.write(b"N")  # no TLS here; the client goes on with a plain startup packet
                await writer.drain()
                continue
            writer.write(_error_response(sqlstate, message))
            await writer.drain()
            return

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(pg_host(), pg_port())

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()
