"""Rate limits on the public writes: Litestar's rate limiting, on Redis, keyed by who is calling.

What is limited: every write (POST, PUT, PATCH, DELETE) under ``/api/`` by a customer or an anonymous
caller (registration, carts and checkout, orders, cancellations, returns, addresses). Staff, admin and
service callers are trusted and never limited (the suite and ``just bench`` run as them).

Keyed by identity, so one abusive caller cannot starve the others: a customer by ``actor_id`` of their
token ("customer:<uuid>"), an anonymous caller (a guest) by client address. Each service counts its own
(Redis keys ``ratelimit:<service>:...``).

``RATE_LIMIT_WRITES`` is "<requests>/<window>", the window in seconds ("5s", or "30") or a unit
("second", "minute", "hour", "day"); default "50/5s": bursts of 50, 10 per second sustained.
Past it the answer is 429 with ``Retry-After`` (seconds until the window resets) and the
``RateLimit-Policy``/``-Limit``/``-Remaining``/``-Reset`` headers that every limited answer carries.

One Redis round trip per limited request: a Lua script counts the write and answers the count and the
window's time left (a fixed window of ``<window>`` seconds from the caller's first write), atomically for
every worker of the service.

Redis down: the limit fails open. The request goes through, the failure is logged and counted in
``commerce_rate_limit_unavailable_total``, and Redis is not asked again for ``REDIS_COOLDOWN_S``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from litestar import MediaType, Response
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.plugins import InitPluginProtocol
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry
from prometheus_client import Counter
from redis.exceptions import RedisError

from apps.common.openapi import error_response
from apps.common.redis_store import COOLDOWN_S, OwnConnectionScript, create_redis_client

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.config.app import AppConfig
    from litestar.stores.base import Store
    from litestar.types import ASGIApp, Receive, Scope, Send

    from apps.common.topology import ServiceSpec

__all__ = ["RateLimitPlugin", "WindowedRateLimitConfig", "caller_identity", "is_limited_route", "parse_limit"]

log = logging.getLogger("apps.rate_limit")

STORE_NAME: Final = "rate_limit"
DEFAULT_LIMIT: Final = "50/5s"
UNLIMITED_ROLES: Final = frozenset({"staff", "admin", "service"})
_WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UNITS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT_RE: Final = re.compile(r"^\s*(?P<n>\d+)\s*/\s*(?P<window>\d+s?|second|minute|hour|day)\s*$")
_429_DESCRIPTION: Final = (
    "Too many writes from this caller; retry after `Retry-After` seconds (`RateLimit-*` headers say the policy)"
)

UNAVAILABLE = Counter(
    "commerce_rate_limit_unavailable",
    "Requests let through unlimited because the rate limit's Redis was unreachable (fail open)",
    ["service"],
)
THROTTLED = Counter("commerce_rate_limited", "Requests answered 429 by the rate limit", ["service"])


def parse_limit(text: str) -> tuple[int, int]:
    """(requests, window seconds) of "50/5s", "120/minute"; a malformed value is a start-up error."""
    match = _LIMIT_RE.match(text)
    if match is None or int(match["n"]) < 1:
        raise ValueError(f"RATE_LIMIT_WRITES must look like '50/5s' or '120/minute', not {text!r}")
    window = match["window"]
    seconds = _UNITS.get(window) or int(window.removesuffix("s"))
    if seconds < 1:
        raise ValueError("RATE_LIMIT_WRITES: the window is at least one second")
    return int(match["n"]), seconds


def is_limited_route(method: str, path: str) -> bool:
    """Writes under /api/, except the service-only /api/internal/ routes."""
    return method in _WRITES and path.startswith("/api/") and not path.startswith("/api/internal/")


def caller_identity(request: Request[Any, Any, Any]) -> str | None:
    """Whom a request counts against; None for a caller who is never limited."""
    return _identity_in(request.scope)


def _identity_in(scope: Scope) -> str | None:
    from apps.common.auth import Principal, actor_id

    principal = scope.get("user")
    if not isinstance(principal, Principal):
        client = scope.get("client")
        return f"address:{client[0] if client else 'unknown'}"
    if principal.role in UNLIMITED_ROLES:
        return None
    return actor_id(principal)


async def _should_limit(request: Request[Any, Any, Any]) -> bool:
    return is_limited_route(request.method, request.url.path) and caller_identity(request) is not None


def _identity_or_anonymous(request: Request[Any, Any, Any]) -> str:
    return caller_identity(request) or "unlimited"


@dataclass
class WindowedRateLimitConfig(RateLimitConfig):
    """Litestar's config, with a window of any number of seconds (Litestar's units are 1 s, 1 min, ...)."""

    window_s: int = 60
    service: str = ""
    counter: OwnConnectionScript | None = None


class IdentityRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's middleware with a window in seconds, ``Retry-After`` on a 429, and fail-open on Redis."""

    config: WindowedRateLimitConfig

    def __init__(self, app: ASGIApp, config: RateLimitConfig) -> None:
        super().__init__(app, config)
        assert isinstance(config, WindowedRateLimitConfig)
        self.window_s = config.window_s
        self.service = config.service
        self._skip_until = 0.0
        self.counter = config.counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Decided from the scope as ``_should_limit`` and ``cache_key_from_request`` decide from a Request:
        # building the Request and its URL, and asking who the caller is twice, cost more than the decision.
        path = scope.get("root_path", "") + scope["path"]  # what request.url.path is
        limited = is_limited_route(str(scope.get("method", "")), path)
        identity = _identity_in(scope) if limited else None
        if identity is not None:
            key = f"{type(self).__name__}::{identity}{_key_suffix(scope)}"
            cache_object = await self._count(key, self.config.get_store_from_app(scope["litestar_app"]))
            if cache_object is not None:
                if len(cache_object.history) > self.max_requests:
                    request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope)
                    await self._refuse(request, cache_object)(scope, receive, send)
                    return
                send = self.create_send_wrapper(send=send, cache_object=cache_object)
        await self.app(scope, receive, send)

    def _refuse(self, request: Request[Any, Any, Any], cache_object: CacheObject) -> ASGIApp:
        """The 429, answered here: raised from a middleware it would pass the access log and the metrics
        as an unhandled error (a 500) before Litestar's outer handler turned it into a 429."""
        THROTTLED.labels(self.service).inc()
        headers = self.create_response_headers(cache_object)
        retry_after = headers[self.config.rate_limit_reset_header_key]
        body = {"status_code": HTTP_429_TOO_MANY_REQUESTS, "detail": f"Too many requests; retry after {retry_after} s"}
        response = Response(
            body,
            status_code=HTTP_429_TOO_MANY_REQUESTS,
            headers={**headers, "Retry-After": retry_after},
            media_type=MediaType.JSON,
        )
        return response.to_asgi_response(app=None, request=request)

    async def _count(self, key: str, store: Store) -> CacheObject | None:
        """The caller's count with this request in it (a refused request is not stored: it reads as one over
        the limit); None: Redis is down. ``history`` holds one entry per write counted, for the headers."""
        if time.monotonic() < self._skip_until:
            UNAVAILABLE.labels(self.service).inc()
            return None
        try:
            if self.counter is None:
                raise TypeError("the rate limit counts in Redis: RateLimitPlugin sets its counter")
            count, left_ms = await self.counter.run([_store_key(store, key)], [self.max_requests, self.window_s * 1000])
            return CacheObject(history=[0] * int(count), reset=int(time.time()) + math.ceil(int(left_ms) / 1000))
        # Redis unreachable, timing out or answering garbage: fail open, never a 500.
        except (RedisError, OSError, ValueError, TypeError) as exc:
            self._skip_until = time.monotonic() + COOLDOWN_S
            UNAVAILABLE.labels(self.service).inc()
            log.warning("rate limit unavailable, request let through", extra={"error": type(exc).__name__})
            return None

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        remaining = max(self.max_requests - len(cache_object.history), 0)
        return {
            self.config.rate_limit_policy_header_key: f"{self.max_requests};w={self.window_s}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(remaining),
            self.config.rate_limit_reset_header_key: str(max(cache_object.reset - int(time.time()), 1)),
        }


# KEYS[1] the caller's counter; ARGV[1] the limit, ARGV[2] the window in ms. Answers {count, ms left in the
# window}: a write past the limit is answered limit + 1 and not stored, so a refused caller's window does
# not grow. EVALSHA, so only the script's hash travels after the first call.
_COUNT: Final = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then
  n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
else
  n = n + 1
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  left = tonumber(ARGV[2])
end
return {n, left}
"""


def _key_suffix(scope: Scope) -> str:
    """What Litestar's ``cache_key_from_request`` adds for a mount or static route."""
    handler = scope.get("route_handler")
    return ("::mount" if getattr(handler, "is_mount", False) else "") + (
        "::static" if getattr(handler, "is_static", False) else ""
    )


def _store_key(store: Store, key: str) -> str:
    """The store's namespaced key, with a suffix of its own: the JSON history of before lives on the plain
    key until its window ends, and INCR on it would fail."""
    assert isinstance(store, RedisStore)
    return f"{store._make_key(key)}:n"


class RateLimitPlugin(InitPluginProtocol):
    """The store (Redis, ``ratelimit:<service>`` namespace), the middleware, and the 429 in OpenAPI."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.requests, self.window_s = parse_limit(os.environ.get("RATE_LIMIT_WRITES", DEFAULT_LIMIT))

    def config(self, counter: OwnConnectionScript | None = None) -> WindowedRateLimitConfig:
        return WindowedRateLimitConfig(
            counter=counter,
            rate_limit=("second", self.requests),
            window_s=self.window_s,
            service=self.spec.name,
            identifier_for_request=_identity_or_anonymous,
            check_throttle_handler=_should_limit,
            middleware_class=IdentityRateLimitMiddleware,
            store=STORE_NAME,
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        # The pool opens on the first command: no I/O here. Stores are lifespan managers of the app:
        # this one closes its client when the app stops; the counter's own connections close with it.
        client = create_redis_client()
        store = RedisStore(client, namespace=f"ratelimit:{self.spec.name}", handle_client_shutdown=True)
        counter = OwnConnectionScript(client.connection_pool, _COUNT)
        app_config.middleware.append(self.config(counter).middleware)
        app_config.on_shutdown.append(counter.close)
        stores = app_config.stores
        if isinstance(stores, StoreRegistry):
            stores.register(STORE_NAME, store)
        else:
            app_config.stores = {**(stores or {}), STORE_NAME: store}
        app_config.on_startup.append(document_rate_limits)
        return app_config


def document_rate_limits(app: Litestar) -> None:
    """A 429 answer (the shared error body) on every operation the limit applies to."""
    from litestar.routes import HTTPRoute

    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if any(is_limited_route(m, route.path_format) for m in handler.http_methods):
                handler.responses = {429: error_response(429, _429_DESCRIPTION), **(handler.responses or {})}
