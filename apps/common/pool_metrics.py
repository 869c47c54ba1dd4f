"""A service's connection pool in Prometheus: checked out, idle, overflow, wait time (SQLAlchemy's QueuePool).

``instrument_pool(engine, service)`` (called where the engine is made, apps/common/db.py) adds, read from
the pool at each scrape:

- ``commerce_db_pool_checked_out{service}``, ``commerce_db_pool_idle``, ``commerce_db_pool_overflow``
  (connections open beyond pool_size), ``commerce_db_pool_size`` and ``commerce_db_pool_max``
  (pool_size + max_overflow: the ceiling the "pool usage > 80 %" alert divides by);
- ``commerce_db_pool_wait_seconds{service}`` (histogram): time to get a connection, a new one's connect
  included, and ``commerce_db_pool_timeouts_total{service}``: checkouts that gave up after pool_timeout.

A process with several uvicorn workers has a pool per worker; each scrape sees the worker that answered.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

__all__ = ["instrument_pool"]

WAIT_SECONDS: Final = Histogram(
    "commerce_db_pool_wait_seconds",
    "Time to get a connection from the service's pool (a new connection's connect included)",
    ["service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TIMEOUTS: Final = Counter("commerce_db_pool_timeouts_total", "Checkouts that gave up after pool_timeout", ["service"])
_WRAPPED: Final = "_commerce_pool_timed"


class _PoolCollector(Collector):
    """The gauges, read from each instrumented engine's current pool (a dispose() replaces the pool)."""

    def __init__(self) -> None:
        self.engines: dict[str, AsyncEngine] = {}
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(f"commerce_db_pool_{name}", doc, labels=["service"])
            for name, doc in (
                ("checked_out", "Connections checked out of the pool (in use)"),
                ("idle", "Connections open and idle in the pool"),
                ("overflow", "Connections open beyond pool_size"),
                ("size", "pool_size"),
                ("max", "pool_size + max_overflow"),
            )
        }
        with self.lock:
            engines = dict(self.engines)
        for service, engine in engines.items():
            pool = engine.sync_engine.pool
            _time_checkouts(pool, service)  # a pool made by dispose() since the last scrape
            for name, value in pool_figures(pool).items():
                families[name].add_metric([service], value)
        yield from families.values()


def pool_figures(pool: Pool) -> dict[str, float]:
    """checked_out, idle, overflow, size, max of a QueuePool (zeros for a pool without a size)."""
    if not isinstance(pool, QueuePool):
        return {"checked_out": 0.0, "idle": 0.0, "overflow": 0.0, "size": 0.0, "max": 0.0}
    size = pool.size()
    max_overflow = max(0, pool._max_overflow)  # QueuePool has no getter for it
    return {
        "checked_out": float(pool.checkedout()),
        "idle": float(pool.checkedin()),
        "overflow": float(max(0, pool.overflow())),
        "size": float(size),
        "max": float(size + max_overflow),
    }


def _time_checkouts(pool: Pool, service: str) -> None:
    """Time the pool's connection getter; SQLAlchemy has events after a checkout but none before it."""
    if getattr(pool, _WRAPPED, False):
        return
    get: Callable[[], Any] = pool._do_get

    @functools.wraps(get)
    def timed_get() -> Any:
        started = time.perf_counter()
        try:
            return get()
        except sa_exc.TimeoutError:
            TIMEOUTS.labels(service).inc()
            raise
        finally:
            WAIT_SECONDS.labels(service).observe(time.perf_counter() - started)

    setattr(pool, "_do_get", timed_get)  # noqa: B010 - mypy refuses assigning to a method
    setattr(pool, _WRAPPED, True)


_collector: _PoolCollector | None = None
_register_lock = threading.Lock()


def instrument_pool(engine: AsyncEngine, service: str) -> AsyncEngine:
    """Report the engine's pool as ``service``'s (the latest engine of a service wins); returns the engine."""
    global _collector
    with _register_lock:
        if _collector is None:
            _collector = _PoolCollector()
            REGISTRY.register(_collector)
        with _collector.lock:
            _collector.engines[service] = engine
    _time_checkouts(engine.sync_engine.pool, service)
    return engine
