"""Rate limits on the public writes: Litestar's rate-limit middleware, counted in-process and shared through Redis,
keyed by who is calling.

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

Counted without a Redis round trip on the request's path: each worker admits or refuses from its own view
of the caller's count (the shared count Redis last answered, plus what this worker admitted since) and
sends what it admitted to Redis in the background, one pipelined script call for every key it touched,
``SYNC_INTERVAL_S`` (50 ms) after the first write since its last call; Redis answers each key's shared count
and the window's time left. Every worker and instance of a service shares one budget per caller through
Redis (a fixed window of ``<window>`` seconds from the caller's first write, keys
``ratelimit:<service>:...:n``); a refused write is not counted. An idle worker makes no call.

The bound (per caller and window; N = the processes counting that caller: workers times instances): one
process alone is exact once Redis has answered it for that caller (its view holds all it admitted); a
process that sees a caller for the first time (just started, or a caller new to it) decides on a count of 0
until its first answer, so across a restart within one window a caller may get up to m more, as if the old
and the new process were two. Together they admit at most
``limit + N * m``, where m is the most one process admits for that caller between two answers of Redis
(the 50 ms interval plus a call's round trip: what it admits while a call is in flight is still decided on
the answer before), and never more than ``N * limit``: each process refuses once its view reaches the limit,
and its view lacks at most what the others admitted since the answers their own views rest on
(tests/unit/test_rate_limit_counts.py checks it with a fake clock, tests/unit/test_review_rate_limit.py why m
counts between answers, not sends; tests/integration/test_rate_limits.py against Redis). A caller spread
over N workers who sends more than the limit within one interval is the case that overshoots; one who sends
it over more than an interval is held to the limit plus a few.

Reads have a budget of their own (``RATE_LIMIT_READS``, default "600/10s"), for customers only: every GET
or HEAD under ``/api/`` (not ``/api/internal/``) by a customer token, counted per customer like the writes
(Redis keys ``ratelimit:<service>:read::customer:<uuid>:n``) but in **units of cost**, not requests. A read
costs one unit when it is admitted and, once its answer is sent, one more per record it wrote to the access
log (``access_log.reads_noted``: rows kept two years) and per ``READ_UNIT_BYTES`` (32 KiB) of body (the
order API spends ~3.5 ms of CPU on any read and ~0.1 ms per KB it sends, so one unit is about one small read).
A read is refused (429, ``Retry-After`` until the window ends) once the units counted reach the budget; the
read that crosses it is served, so the overshoot is one read's cost. Because the cost is known only after the
answer, a customer's reads are served ``READ_CONCURRENCY`` (4) at a time in one process, the others waiting
their turn (a browser's six at once are all served; each is admitted on the cost of those before it), and a
read finding ``READ_QUEUE`` (32) already waiting is refused at once (429, ``Retry-After: 1``): a burst cannot
be admitted whole before its cost is counted. An honest client
stays far below both (a poller reading a small answer ten times a second spends a third of the budget). Staff,
admin and service callers are not counted (trusted; the suite and the back office read as them); anonymous
reads are not either: keyed by address they would share one budget behind a NAT or a proxy, and a guest can
read only the catalog and their own cart by id, not a customer's records (docs/decisions.md, session 33).

Redis down: the limit fails open. Once a call to Redis fails (the first is made at start-up), every
request goes through, counted in ``commerce_rate_limit_unavailable_total`` and logged once, and Redis is
tried again every ``REDIS_COOLDOWN_S``; the first call that succeeds ends it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Final

from litestar import MediaType, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.plugins import InitPluginProtocol
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS
from prometheus_client import Counter

from apps.common.openapi import error_response
from apps.common.redis_store import COOLDOWN_S, OwnConnectionScript, create_redis_client
from apps.common.settings import SettingError, Settings, env

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.config.app import AppConfig
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from apps.common.topology import ServiceSpec

__all__ = [
    "RateLimitPlugin",
    "RateLimitSettings",
    "ReadBudget",
    "SharedCounts",
    "SyncedLimit",
    "WindowedRateLimitConfig",
    "caller_identity",
    "is_limited_route",
    "is_read_route",
    "parse_limit",
]

log = logging.getLogger("apps.rate_limit")

DEFAULT_LIMIT: Final = "50/5s"
DEFAULT_READ_LIMIT: Final = "600/10s"
# A read's cost past its first unit: one per this many bytes of body (module doc: ~3.5 ms of CPU per read
# and ~0.1 ms per KB on the order API, measured in session 33).
READ_UNIT_BYTES: Final = 32 * 1024
# A customer's reads served at once in one process (their cost is counted only once answered): the next wait
# their turn, up to READ_QUEUE of them (a browser sends 6 at once per host over HTTP/1.1, every one of a page's
# over HTTP/2); past that, 429.
READ_CONCURRENCY: Final = 4
READ_QUEUE: Final = 32
UNLIMITED_ROLES: Final = frozenset({"staff", "admin", "service"})
# How long a worker holds what it admitted before telling Redis: the overshoot bound's interval (module doc).
SYNC_INTERVAL_S: Final = 0.05
_PRUNE_EVERY_S: Final = 1.0
_WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READS: Final = frozenset({"GET", "HEAD"})
_UNITS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT_RE: Final = re.compile(r"^\s*(?P<n>\d+)\s*/\s*(?P<window>\d+s?|second|minute|hour|day)\s*$")
_429_DESCRIPTION: Final = (
    "Too many writes from this caller; retry after `Retry-After` seconds (`RateLimit-*` headers say the policy)"
)
_429_READ_DESCRIPTION: Final = (
    "A customer's reads past their budget (counted in units of cost: a unit per read, per record it shows and"
    " per 32 KiB it sends) or too many at once; retry after `Retry-After` seconds (`RateLimit-*` headers)"
)

UNAVAILABLE = Counter(
    "commerce_rate_limit_unavailable",
    "Requests let through unlimited because the rate limit's Redis was unreachable (fail open)",
    ["service"],
)
THROTTLED = Counter("commerce_rate_limited", "Requests answered 429 by the rate limit", ["service"])
READS_THROTTLED = Counter(
    "commerce_read_limited",
    "Customers' reads answered 429: past the read budget (budget) or too many waiting their turn (concurrency)",
    ["service", "reason"],
)


def parse_limit(text: str, name: str = "RATE_LIMIT_WRITES") -> tuple[int, int]:
    """(requests, window seconds) of "50/5s", "120/minute"; a malformed value is a start-up error."""
    match = _LIMIT_RE.match(text)
    if match is None or int(match["n"]) < 1:
        raise SettingError(f"{name}={text!r}: not a limit such as '50/5s' or '120/minute'")
    window = match["window"]
    seconds = _UNITS.get(window) or int(window.removesuffix("s"))
    if seconds < 1:
        raise SettingError(f"{name}={text!r}: the window is at least one second")
    return int(match["n"]), seconds


@dataclass(frozen=True, slots=True)
class RateLimitSettings(Settings):
    """The two budgets, read when the app is built (``RateLimitPlugin``); both parsed there."""

    writes: str = env("RATE_LIMIT_WRITES", DEFAULT_LIMIT)
    reads: str = env("RATE_LIMIT_READS", DEFAULT_READ_LIMIT)

    def __post_init__(self) -> None:
        for each in ("writes", "reads"):
            parse_limit(getattr(self, each), self.variable(each))  # a malformed one stops the start

    @property
    def write_limit(self) -> tuple[int, int]:
        """(requests, window seconds)."""
        return parse_limit(self.writes, self.variable("writes"))

    @property
    def read_limit(self) -> tuple[int, int]:
        """(units, window seconds)."""
        return parse_limit(self.reads, self.variable("reads"))


def is_limited_route(method: str, path: str) -> bool:
    """Writes under /api/, except the service-only /api/internal/ routes."""
    return method in _WRITES and path.startswith("/api/") and not path.startswith("/api/internal/")


def is_read_route(method: str, path: str) -> bool:
    """Reads under /api/, except the service-only /api/internal/ routes."""
    return method in _READS and path.startswith("/api/") and not path.startswith("/api/internal/")


def _reader_in(scope: Scope) -> str | None:
    """Whom a read counts against: a customer (by ``actor_id``); None for every other caller (module doc)."""
    from apps.common.auth import Principal, actor_id

    principal = scope.get("user")
    if isinstance(principal, Principal) and principal.role == "customer":
        return actor_id(principal)
    return None


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


class _Count:
    """One caller's count as this process sees it."""

    __slots__ = ("known", "pending", "reset_at", "sending")

    def __init__(self, reset_at: float) -> None:
        self.known = 0  # the shared count Redis last answered (every process's writes it had been sent)
        self.sending = 0  # admitted here, sent to Redis, not answered yet
        self.pending = 0  # admitted here since, not sent yet
        self.reset_at = reset_at  # when the window ends (clock time): Redis's time left once it answered


Sent = list[tuple[str, _Count, int]]


class SharedCounts:
    """The counting, without I/O and on a clock it is given: what the middleware asks per request and what the
    background call to Redis takes and brings back (module doc, "The bound")."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._counts: dict[str, _Count] = {}
        self._unsent: dict[str, _Count] = {}
        self._pruned_at = clock()

    def admit(self, key: str) -> tuple[int, float]:
        """(the caller's count with this write, the window's end); a count past the limit is a refusal, and a
        refused write is not counted."""
        entry = self._window_of(key)
        seen = entry.known + entry.sending + entry.pending
        if seen >= self.limit:
            return seen + 1, entry.reset_at
        entry.pending += 1
        if entry.pending == 1:
            self._unsent[key] = entry
        return seen + 1, entry.reset_at

    def charge(self, key: str, units: int) -> None:
        """Add what an admitted request turned out to cost past its first unit (a read's records and bytes),
        refusing nothing now: the caller's next request sees it. Charged to the window that is open now, a new
        one if the caller's has ended meanwhile (the cost is what they spend now, whenever they were admitted)."""
        if units <= 0:
            return
        entry = self._window_of(key)
        entry.pending += units
        self._unsent[key] = entry

    def _window_of(self, key: str) -> _Count:
        """The caller's count in the window open now (a new one if theirs has ended)."""
        now = self.clock()
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = _Count(now + self.window_s)
        elif now >= entry.reset_at:
            # A new window. What was admitted in the old one and not sent yet belongs to a Redis window that
            # has ended (reset_at is never before Redis's expiry): dropped. A call in flight settles itself.
            entry.known = entry.pending = 0
            entry.reset_at = now + self.window_s
        return entry

    @property
    def has_unsent(self) -> bool:
        return bool(self._unsent)

    def take_unsent(self) -> Sent:
        """What to send to Redis now: each key with what was admitted since the last call; it is 'sending'
        until :meth:`settle` or :meth:`unsent`."""
        batch = [(key, entry, entry.pending) for key, entry in self._unsent.items() if entry.pending]
        self._unsent.clear()
        for _, entry, delta in batch:
            entry.sending += delta
            entry.pending = 0
        return batch

    def settle(self, batch: Sent, answers: list[tuple[int, int]]) -> None:
        """Redis's answer, per key of ``batch``: the shared count with ours in it, and the window's ms left."""
        now = self.clock()
        for (_, entry, delta), (count, left_ms) in zip(batch, answers, strict=True):
            entry.sending -= delta
            entry.known = count
            # Measured from the answer's arrival: at or after Redis's own expiry, never before it.
            entry.reset_at = now + left_ms / 1000
        self.prune(now)

    def unsent(self, batch: Sent) -> None:
        """The call failed: what it carried goes back to be sent next time, unless its window has ended."""
        now = self.clock()
        for key, entry, delta in batch:
            entry.sending -= delta
            if now < entry.reset_at and self._counts.get(key) is entry:
                entry.pending += delta
                self._unsent[key] = entry
        self.prune(now)

    def prune(self, now: float) -> None:
        """Forget callers whose window has ended (at most once a second: a pass over every caller)."""
        if now - self._pruned_at < _PRUNE_EVERY_S:
            return
        self._pruned_at = now
        ended = [key for key, entry in self._counts.items() if entry.reset_at <= now and not entry.sending]
        for key in ended:
            del self._counts[key]

    def __len__(self) -> int:
        return len(self._counts)


# KEYS: the callers' counters; ARGV[1] the window in ms, ARGV[1 + i] what this process admitted for KEYS[i]
# since its last call. Answers {count, ms left} per key: the shared count with this process's writes in it.
# A counter's window starts with its first write. EVALSHA, so only the script's hash travels with the keys.
_SYNC: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[i + 1])
  local left = redis.call('PTTL', key)
  if left < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    left = tonumber(ARGV[1])
  end
  out[2 * i - 1] = n
  out[2 * i] = left
end
return out
"""


class SyncedLimit:
    """A process's :class:`SharedCounts` and its calls to Redis: started on the first write after a quiet
    spell, ``interval_s`` later, one at a time; the first call at start-up says whether Redis is there."""

    def __init__(
        self,
        counts: SharedCounts,
        script: OwnConnectionScript,
        *,
        key_prefix: str,
        service: str = "",
        interval_s: float = SYNC_INTERVAL_S,
        cooldown_s: float = COOLDOWN_S,
    ) -> None:
        self.counts = counts
        self.script = script
        self.key_prefix = key_prefix
        self.service = service
        self.interval_s = interval_s
        self.cooldown_s = cooldown_s
        self.down = False  # the last call to Redis failed: every write goes through until one succeeds
        self._timer: asyncio.TimerHandle | None = None
        self._call: asyncio.Task[None] | None = None
        self._closed = False

    def admit(self, key: str) -> tuple[int, float] | None:
        """(count with this write, window end) as :meth:`SharedCounts.admit`; None: Redis is down, let it through."""
        if self.down:
            UNAVAILABLE.labels(self.service).inc()
            return None
        answer = self.counts.admit(key)
        self._soon()
        return answer

    def charge(self, key: str, units: int) -> None:
        """A request's cost past its first unit, as :meth:`SharedCounts.charge` (nothing while Redis is down)."""
        if self.down or units <= 0:
            return
        self.counts.charge(key, units)
        self._soon()

    def _soon(self) -> None:
        if self._timer is None and self._call is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._start)

    def _start(self) -> None:
        self._timer = None
        self._call = asyncio.ensure_future(self.sync())
        self._call.add_done_callback(self._done)

    def _done(self, call: asyncio.Task[None]) -> None:
        self._call = None
        if not call.cancelled():
            self._next()

    def _next(self) -> None:
        """After a call: Redis again after the cool-down while it is down, else in an interval if there is
        something to send (else at the next write)."""
        if self._closed or self._timer is not None:
            return
        if self.down:
            self._timer = asyncio.get_running_loop().call_later(self.cooldown_s, self._start)
        elif self.counts.has_unsent:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._start)

    async def start(self, _app: object = None) -> None:
        """The first call, at start-up: a Redis that is not there is known (fail open) before the first write."""
        await self.sync()
        self._next()

    async def sync(self) -> None:
        """One call: everything admitted since the last one, the shared counts back (with nothing to send,
        it only tells whether Redis answers). Raises only its cancellation: a failure is fail-open until a call
        succeeds."""
        batch = self.counts.take_unsent()
        try:
            keys = [f"{self.key_prefix}{key}:n" for key, _, _ in batch]
            reply = await self.script.run(keys, [self.counts.window_s * 1000, *(delta for _, _, delta in batch)])
            answers = [(int(reply[i]), int(reply[i + 1])) for i in range(0, 2 * len(batch), 2)]
            if len(reply) != 2 * len(batch):
                raise ValueError(f"{len(reply)} numbers for {len(batch)} keys")
        except asyncio.CancelledError:
            self.counts.unsent(batch)  # never left 'sending': that would hold those callers' counts up for good
            raise
        # Redis unreachable, timing out or answering garbage (or anything else): fail open, never a 500.
        except Exception as exc:
            self.counts.unsent(batch)
            if not self.down:
                log.warning("rate limit unavailable, requests let through", extra={"error": type(exc).__name__})
            self.down = True
            return
        self.counts.settle(batch, answers)
        if self.down:
            log.info("rate limit's Redis is back")
            self.down = False

    async def close(self, _app: object = None) -> None:
        """Stop calling, send what is left (a restarted worker's writes still count), close the connection."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._call is not None:
            await asyncio.wait([self._call])
        if self.counts.has_unsent and not self.down:
            await self.sync()
        await self.script.close()


@dataclass
class WindowedRateLimitConfig(RateLimitConfig):
    """Litestar's config, with a window of any number of seconds (Litestar's units are 1 s, 1 min, ...)."""

    window_s: int = 60
    service: str = ""
    limit: SyncedLimit | None = None
    reads: ReadBudget | None = None


class _Turns:
    """One customer's reads in this process: how many are being served, and the ones waiting for a turn."""

    __slots__ = ("serving", "waiting")

    def __init__(self) -> None:
        self.serving = 0
        self.waiting: deque[asyncio.Future[None]] = deque()


@dataclass
class ReadBudget:
    """A process's read budget (module doc): the units counted through :class:`SyncedLimit`, and each
    customer's reads served here ``concurrency`` at a time, up to ``queue`` more waiting their turn."""

    limit: SyncedLimit
    _: KW_ONLY
    service: str = ""
    concurrency: int = READ_CONCURRENCY
    queue: int = READ_QUEUE
    turns: dict[str, _Turns] = field(default_factory=dict)

    async def read(self, app: ASGIApp, reader: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a customer's read in its turn and within the budget, or answer 429; its cost is charged once it
        is answered, before the next read waiting its turn is admitted."""
        if not await self._turn(reader):
            READS_THROTTLED.labels(self.service, "concurrency").inc()
            detail = f"Too many reads at once ({self.concurrency} served, {self.queue} waiting); retry after 1 s"
            await _too_many(scope, detail, {"Retry-After": "1"})(scope, receive, send)
            return
        try:
            await self._within_budget(app, reader, scope, receive, send)
        finally:
            self._pass_turn(reader)

    async def _turn(self, reader: str) -> bool:
        """Wait for one of the customer's ``concurrency`` turns; False at once if ``queue`` reads already wait."""
        turns = self.turns.get(reader)
        if turns is None:
            turns = self.turns[reader] = _Turns()
        if turns.serving < self.concurrency:
            turns.serving += 1
            return True
        if len(turns.waiting) >= self.queue:
            return False
        handed = asyncio.get_running_loop().create_future()
        turns.waiting.append(handed)
        try:
            await handed  # a finished read hands its turn over (``serving`` unchanged)
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self._pass_turn(reader)  # handed over, then cancelled before it ran: the next one's
            elif handed in turns.waiting:  # (a finishing read may have dropped it already: W33-4)
                turns.waiting.remove(handed)
            raise
        return True

    def _pass_turn(self, reader: str) -> None:
        turns = self.turns[reader]
        while turns.waiting:
            handed = turns.waiting.popleft()
            if not handed.done():
                handed.set_result(None)
                return
        turns.serving -= 1
        if not turns.serving:
            del self.turns[reader]

    async def _within_budget(self, app: ASGIApp, reader: str, scope: Scope, receive: Receive, send: Send) -> None:
        from apps.common.access_log import reads_noted

        key = f"read::{reader}"
        answer = self.limit.admit(key)
        headers: dict[str, str] = {}
        if answer is not None:  # (None: Redis is down, the budget fails open)
            count, reset_at = answer
            counts = self.limit.counts
            headers = _policy_headers(counts.limit, int(counts.window_s), count, reset_at - counts.clock())
            if count > counts.limit:
                READS_THROTTLED.labels(self.service, "budget").inc()
                retry_after = headers["RateLimit-Reset"]
                detail = f"Too many reads; retry after {retry_after} s"
                await _too_many(scope, detail, {**headers, "Retry-After": retry_after})(scope, receive, send)
                return
        sent = logged = 0

        async def counting_send(message: Message) -> None:
            nonlocal sent, logged
            if message["type"] == "http.response.start":
                # Before the access log's own wrapper (outside this one) writes the records and forgets them.
                logged = reads_noted() if message["status"] < 400 else 0
                if headers:
                    MutableScopeHeaders(message).update(headers)
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, counting_send)
        finally:
            self.limit.charge(key, logged + sent // READ_UNIT_BYTES)


def _policy_headers(limit: int, window_s: int, count: int, left_s: float) -> dict[str, str]:
    return {
        "RateLimit-Policy": f"{limit};w={window_s}",
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(limit - count, 0)),
        "RateLimit-Reset": str(max(math.ceil(left_s), 1)),
    }


def _too_many(scope: Scope, detail: str, headers: dict[str, str]) -> ASGIApp:
    """A 429 answered by the middleware itself: raised from a middleware it would pass the access log and the
    metrics as an unhandled error (a 500) before Litestar's outer handler turned it into a 429."""
    request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope)
    body = {"status_code": HTTP_429_TOO_MANY_REQUESTS, "detail": detail}
    response = Response(body, status_code=HTTP_429_TOO_MANY_REQUESTS, headers=headers, media_type=MediaType.JSON)
    return response.to_asgi_response(app=None, request=request)


class IdentityRateLimitMiddleware(RateLimitMiddleware):
    """Litestar's middleware with a window in seconds, ``Retry-After`` on a 429, the count in-process and
    shared through Redis in the background (:class:`SyncedLimit`), and fail-open on Redis."""

    config: WindowedRateLimitConfig

    def __init__(self, app: ASGIApp, config: RateLimitConfig) -> None:
        super().__init__(app, config)
        assert isinstance(config, WindowedRateLimitConfig)
        self.window_s = config.window_s
        self.service = config.service
        self.limit = config.limit
        self.reads = config.reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Decided from the scope as ``_should_limit`` and ``cache_key_from_request`` decide from a Request:
        # building the Request and its URL, and asking who the caller is twice, cost more than the decision.
        path = scope.get("root_path", "") + scope["path"]  # what request.url.path is
        method = str(scope.get("method", ""))
        if method in _READS:
            reader = _reader_in(scope) if self.reads is not None and is_read_route(method, path) else None
            if reader is None or self.reads is None:
                await self.app(scope, receive, send)
            else:
                await self.reads.read(self.app, reader, scope, receive, send)
            return
        limited = is_limited_route(method, path)
        identity = _identity_in(scope) if limited else None
        if identity is not None:
            cache_object = self._count(f"{type(self).__name__}::{identity}{_key_suffix(scope)}")
            if cache_object is not None:
                if len(cache_object.history) > self.max_requests:
                    await self._refuse(scope, cache_object)(scope, receive, send)
                    return
                send = self.create_send_wrapper(send=send, cache_object=cache_object)
        await self.app(scope, receive, send)

    def _refuse(self, scope: Scope, cache_object: CacheObject) -> ASGIApp:
        THROTTLED.labels(self.service).inc()
        headers = self.create_response_headers(cache_object)
        retry_after = headers[self.config.rate_limit_reset_header_key]
        detail = f"Too many requests; retry after {retry_after} s"
        return _too_many(scope, detail, {**headers, "Retry-After": retry_after})

    def _count(self, key: str) -> CacheObject | None:
        """The caller's count with this request in it (a refused request reads as one over the limit); None:
        Redis is down. ``history`` holds one entry per write counted, for the headers."""
        if self.limit is None:
            raise TypeError("the rate limit counts through SyncedLimit: RateLimitPlugin sets it")
        answer = self.limit.admit(key)
        if answer is None:
            return None
        count, reset_at = answer
        left = reset_at - self.limit.counts.clock()
        return CacheObject(history=[0] * count, reset=int(time.time()) + math.ceil(left))

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        remaining = max(self.max_requests - len(cache_object.history), 0)
        return {
            self.config.rate_limit_policy_header_key: f"{self.max_requests};w={self.window_s}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(remaining),
            self.config.rate_limit_reset_header_key: str(max(cache_object.reset - int(time.time()), 1)),
        }


def _key_suffix(scope: Scope) -> str:
    """What Litestar's ``cache_key_from_request`` adds for a mount or static route."""
    handler = scope.get("route_handler")
    return ("::mount" if getattr(handler, "is_mount", False) else "") + (
        "::static" if getattr(handler, "is_static", False) else ""
    )


class RateLimitPlugin(InitPluginProtocol):
    """The count (in-process, shared through Redis under ``ratelimit:<service>:``), the middleware, and the
    429 in OpenAPI."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        settings = RateLimitSettings.from_env()
        self.requests, self.window_s = settings.write_limit
        self.read_units, self.read_window_s = settings.read_limit

    def config(self, limit: SyncedLimit | None = None, reads: ReadBudget | None = None) -> WindowedRateLimitConfig:
        return WindowedRateLimitConfig(
            limit=limit,
            reads=reads,
            rate_limit=("second", self.requests),
            window_s=self.window_s,
            service=self.spec.name,
            identifier_for_request=_identity_or_anonymous,
            check_throttle_handler=_should_limit,
            middleware_class=IdentityRateLimitMiddleware,
        )

    def synced_limit(self, requests: int | None = None, window_s: int | None = None) -> SyncedLimit:
        """No I/O: the connection opens on the first call (at start-up). The write budget unless told."""
        client = create_redis_client()  # for its settings only: the script connects on its own
        return SyncedLimit(
            SharedCounts(requests or self.requests, window_s or self.window_s),
            OwnConnectionScript(client.connection_pool, _SYNC),
            key_prefix=f"ratelimit:{self.spec.name}:",
            service=self.spec.name,
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        limit = self.synced_limit()
        read_limit = self.synced_limit(self.read_units, self.read_window_s)
        reads = ReadBudget(read_limit, service=self.spec.name)
        app_config.middleware.append(self.config(limit, reads).middleware)
        for synced in (limit, read_limit):
            app_config.on_startup.append(synced.start)
            app_config.on_shutdown.append(synced.close)
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
            elif any(is_read_route(m, route.path_format) for m in handler.http_methods):
                # Every read under /api/: a customer's is budgeted (whether a route serves customers is its
                # guards' business, not visible here; the document says what may happen).
                handler.responses = {429: error_response(429, _429_READ_DESCRIPTION), **(handler.responses or {})}
