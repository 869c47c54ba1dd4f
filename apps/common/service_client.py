"""Calls from one service to another: one pooled aiohttp session per dependency, short timeouts, and
every failure (timeout, refused connection, 5xx, an answer we cannot read) as DependencyUnavailable,
which the API answers with a 503 naming the dependency.

aiohttp rather than httpx: on the order hot path httpx's connection pool cost a quarter of the service's
CPU under load (docs/benchmarks.md).

Every call carries the calling service's own bearer token (role ``service``, scopes of what it may call;
``apps/common/auth_service.py``): from ``AUTH_SERVICE_TOKEN_FILE`` or ``AUTH_SERVICE_TOKEN`` (the identity
provider's, in production), else minted by the local issuer (development and tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, TypeVar

import aiohttp
import msgspec

from apps.common.auth_service import service_token_header
from apps.common.errors import DependencyUnavailable
from apps.common.topology import BY_NAME

__all__ = ["ServiceClient", "open_service_client", "service_base_url"]

T = TypeVar("T")
JSON: Final = {"Content-Type": "application/json"}


def service_base_url(service: str) -> str:
    """``<SERVICE>_URL`` from the environment, else the local stack's port (``<SERVICE>_PORT`` or the default)."""
    return os.environ.get(f"{service.upper()}_URL", f"http://127.0.0.1:{BY_NAME[service].local_port()}")


class ServiceClient:
    """Requests to one service; answers (status, body) or raises DependencyUnavailable naming it."""

    def __init__(self, name: str, session: aiohttp.ClientSession, *, caller: str | None = None) -> None:
        self.name = name
        self.session = session
        self.caller = caller  # whose token to send; None: this process's service

    async def get(self, path: str) -> tuple[int, bytes]:
        auth = service_token_header(self.caller)
        return await self._call(lambda: self.session.get(path, headers=auth))

    async def exists(self, path: str) -> bool:
        """Whether the resource at ``path`` exists: 200 yes, 404 no, anything else DependencyUnavailable."""
        status, content = await self.get(path)
        if status == 404:
            return False
        self.decode(status, content, dict)
        return True

    async def post_json(self, path: str, body: object) -> tuple[int, bytes]:
        """POST for a read (validate, price): safe to send twice, so a stale connection is retried once."""
        data = msgspec.json.encode(body)
        headers = {**JSON, **service_token_header(self.caller)}
        return await self._call(lambda: self.session.post(path, data=data, headers=headers))

    def decode(self, status: int, content: bytes, type_: type[T]) -> T:
        """The 200 answer as ``type_``; anything else means the dependency is not working."""
        if status != 200:
            raise DependencyUnavailable(self.name, f"answered {status}")
        try:
            return msgspec.json.decode(content, type=type_)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # (a string that is not UTF-8 is not a DecodeError)
            raise DependencyUnavailable(self.name, f"unexpected answer: {exc}") from exc

    async def _call(
        self, request: Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]]
    ) -> tuple[int, bytes]:
        try:
            try:
                async with request() as response:
                    return response.status, await response.read()
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A pooled connection the server closed as we reused it (keep-alive race): once more, on a
                # fresh one. Every call through this client is a read, so sending it twice is harmless.
                async with request() as response:
                    return response.status, await response.read()
        except TimeoutError as exc:
            raise DependencyUnavailable(self.name, "timed out") from exc
        except aiohttp.ClientError as exc:
            raise DependencyUnavailable(self.name, f"unreachable ({type(exc).__name__})") from exc


def open_service_client(
    service: str, *, timeout_s: float = 2.0, pool_size: int = 64
) -> AbstractAsyncContextManager[aiohttp.ClientSession]:
    """The pooled session for ``service``: enter it in a lifespan (no I/O at import time)."""
    # Below uvicorn's 5 s keep-alive, so the client drops an idle connection before the server does.
    connector = aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(1.0, timeout_s))
    return aiohttp.ClientSession(base_url=service_base_url(service), timeout=timeout, connector=connector)
