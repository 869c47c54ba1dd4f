"""Each person's data key as another service gets it: from the customer service, cached briefly.

Producers of events with personal fields (the checkout service) ask with POST, which makes the key on
first use; consumers that need a clear value (the order service, turning checkout.completed into an
order) ask with GET. Both go through the service-only route /api/internal/data-keys/{subject}
(apps/customer/data_keys.py) with the calling service's own token (apps/common/service_client.py).
A key is kept in process for ``TTL_S``: an erasure reaches every process within that time; a destroyed
key (410) or one never made (404) is remembered as None (both mean: the values are erased for good).
At most ``MAX_ENTRIES`` are kept: a consumer meets every buyer once, so an unbounded cache grew with the
customer base and held raw keys long past their time; past the cap, expired keys go first, then the
longest unused (an evicted tombstone is only asked again, and answers 410 again).
Any other failure raises DependencyUnavailable (for_sealing: the API answers 503) or, for a consumer
(for_opening), RetryableError: it retries rather than erasing by mistake or dead-lettering the event.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Final

import msgspec

from apps.common.errors import DependencyUnavailable
from apps.common.personal import DataKey, check_subject, unwrap_data_key
from apps.common.service_client import ServiceClient, open_service_client
from outbox.errors import RetryableError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["MAX_ENTRIES", "TTL_S", "DataKeys", "consumer_data_keys"]

TTL_S: Final = 30.0
MAX_ENTRIES: Final = 10_000
PATH: Final = "/api/internal/data-keys/"
_GONE: Final = frozenset({404, 410})


class _KeyBody(msgspec.Struct):
    subject: str
    kid: str
    key: str


class DataKeys:
    def __init__(self, customers: ServiceClient, *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.customers = customers
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # In order of last use (a hit moves its entry to the end), so the first entries are the longest unused.
        self._cache: dict[tuple[str, bool], tuple[float, DataKey | None]] = {}

    async def for_sealing(self, subject: str) -> DataKey | None:
        """The subject's key, made on first use; None once destroyed (seal nothing: publish ERASED)."""
        return await self._get(subject, create=True)

    async def for_opening(self, subject: str) -> DataKey | None:
        """The subject's key; None when it is destroyed or was never made (the values read as ERASED).

        For consumers: a customer service that fails (anything but 200, 404, 410: a 503 while its database
        restarts, a 429, a dropped connection) raises RetryableError, so the event waits and is applied once
        the service answers. As DependencyUnavailable it was the event's fault to the runtime: the order
        saga dead-lettered the checkout.completed and its order was never created. A subject no key can
        have (CryptoError) is the event's own fault: checked first, it is not asked about forever."""
        check_subject(subject)
        try:
            return await self._get(subject, create=False)
        except DependencyUnavailable as exc:
            raise RetryableError(str(exc), dependency=exc.dependency) from exc

    async def _get(self, subject: str, *, create: bool) -> DataKey | None:
        now = time.monotonic()
        entry = (subject, create)
        cached = self._cache.pop(entry, None)
        if cached is not None and (cached[0] > now or cached[1] is None):
            self._cache[entry] = cached
            return cached[1]
        if create:
            status, content = await self.customers.post_json(PATH + subject, {})
        else:
            status, content = await self.customers.get(PATH + subject)
        key = None if status in _GONE else _decoded(self.customers, status, content)
        self._cache[entry] = (now + self.ttl_s, key)
        if len(self._cache) > self.max_entries:
            self._evict(now)
        return key

    def _evict(self, now: float) -> None:
        """Expired keys first (tombstones never expire), then the longest unused, down to nine tenths of the
        cap, so a cache full of live entries is swept once per tenth of the cap, not on every miss."""
        for entry in [entry for entry, (until, key) in self._cache.items() if key is not None and until <= now]:
            del self._cache[entry]
        excess = len(self._cache) - self.max_entries * 9 // 10
        for entry in list(itertools.islice(self._cache, max(excess, 0))):
            del self._cache[entry]


def _decoded(client: ServiceClient, status: int, content: bytes) -> DataKey:
    body = client.decode(status, content, _KeyBody)
    return unwrap_data_key(body.subject, body.kid, body.key)


_consumer: dict[int, tuple[aiohttp.ClientSession, DataKeys]] = {}


async def consumer_data_keys() -> DataKeys:
    """The consumer process's client (one per event loop), opened on first use and kept for the process."""
    loop = id(asyncio.get_running_loop())
    found = _consumer.get(loop)
    if found is None:
        session = await open_service_client("customer", timeout_s=2.0, pool_size=4).__aenter__()
        found = _consumer[loop] = (session, DataKeys(ServiceClient("customer", session)))
    return found[1]
