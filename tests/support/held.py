"""A service's app run in-process under uvicorn, its calls to one dependency passing a proxy that can hold
the answers back: to hold a command between its remote call and what it does next (lock, write), or to let
its own timeout run out. The proxy forwards every call to the real running service; only the answers to
paths under ``held_prefix`` are held, and only after the real service has answered them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from aiohttp import ClientSession, web

from tests.support.http import service_url
from tests.support.orders import eventually


class HeldService:
    """A proxy to the real ``service`` whose answers under ``held_prefix`` can be held back (``hold``)."""

    def __init__(self, service: str, held_prefix: str) -> None:
        self.held_prefix = held_prefix
        self.held = False
        self.answered = asyncio.Event()  # the real service has answered a held call
        self.release = asyncio.Event()
        self.answers = 0  # held answers since ``hold``
        self.url = ""
        self._upstream = service_url(service)

    def hold(self) -> None:
        self.held, self.answered, self.release, self.answers = True, asyncio.Event(), asyncio.Event(), 0

    def let_go(self) -> None:
        """Release what is held and hold nothing more."""
        self.held = False
        self.release.set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            ClientSession() as session,
            session.request(request.method, self._upstream + request.path_qs, data=body, headers=headers) as answer,
        ):
            status, content, kind = answer.status, await answer.read(), answer.content_type
        if self.held and request.path.startswith(self.held_prefix):
            self.answers += 1
            self.answered.set()
            await self.release.wait()
        return web.Response(status=status, body=content, content_type=kind)


@asynccontextmanager
async def held_service(service: str, held_prefix: str) -> AsyncIterator[HeldService]:
    proxy = HeldService(service, held_prefix)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield proxy
    finally:
        proxy.let_go()
        await runner.cleanup()


@asynccontextmanager
async def in_process(create_app: Callable[[], Any]) -> AsyncIterator[str]:
    """``create_app()`` served by uvicorn in this event loop (real concurrent HTTP, unlike Litestar's test
    client, which handles one request at a time); its base URL. Set the environment its lifespan reads
    (``<SERVICE>_URL``) before entering."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return server.started

    try:
        await eventually(started, within=30, what="the in-process app started")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
