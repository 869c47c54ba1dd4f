"""The cyclic garbage collector kept off what start-up built, in every service worker.

A full collection walks every tracked object: in an order-api worker ~150,000 after start-up (modules,
classes, Litestar's routing and signature models, SQLAlchemy's mappers), 0.4 s on the loaded 2-core
reference machine. It runs whenever enough objects survived into the oldest generation, so now and then
one request waited that long (an HTTP p99 spike). Frozen once the app has started, those objects are never
walked again; a first generation of 10,000 objects instead of 700 collects about a tenth as often. The
consumer processes do the same (outbox.runner.settle_heap; docs/benchmarks.md, session 18).

A collection still stalls every request in flight on its worker, so one that takes longer than
``GC_SLOW_MS`` (20 ms) is logged with its generation, its wall time and the CPU time it used: a latency
spike can then be matched against the collector, or ruled out (a long wall time with little CPU is the
worker waiting for a core, not the collector's work). The variable is read at the app's start (``HeapSettings``):
a value that is not a number stops it, naming the variable.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

from apps.common.settings import DAY_S, Settings, env, once

log = logging.getLogger("apps.heap")

SLOW_COLLECTION_MS = 20.0


@dataclass(frozen=True, slots=True)
class HeapSettings(Settings):
    slow_collection_ms: float = env(
        "GC_SLOW_MS", SLOW_COLLECTION_MS, minimum=0, maximum=DAY_S * 1000
    )  # 0: every collection


heap_settings = once(HeapSettings)


def settle_heap(*_: object) -> None:
    """An on_startup hook (it ignores the app it is given): collect once, freeze, raise the threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    watch_collections(heap_settings().slow_collection_ms)


class _CollectionTimer:
    """A gc.callbacks entry: times each collection, logs those of ``slow_ms`` or more."""

    def __init__(self, slow_ms: float) -> None:
        self.slow_s = slow_ms / 1000
        self.started = 0.0
        self.cpu_started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started, self.cpu_started = time.perf_counter(), time.thread_time()
            return
        took = time.perf_counter() - self.started
        if took >= self.slow_s:
            log.warning(
                "slow garbage collection",
                extra={
                    "generation": info.get("generation"),
                    "collected": info.get("collected"),
                    "duration_ms": round(took * 1000, 1),
                    "cpu_ms": round((time.thread_time() - self.cpu_started) * 1000, 1),
                },
            )


def watch_collections(slow_ms: float = SLOW_COLLECTION_MS) -> None:
    """Log collections of ``slow_ms`` or more (once per process: a second call replaces the first)."""
    gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, _CollectionTimer)]
    gc.callbacks.append(_CollectionTimer(slow_ms))
