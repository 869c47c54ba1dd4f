"""The cyclic garbage collector kept off what start-up built, in every service worker.

A full collection walks every tracked object: in an order-api worker ~150,000 after start-up (modules,
classes, Litestar's routing and signature models, SQLAlchemy's mappers), 0.4 s on the loaded 2-core
reference machine. It runs whenever enough objects survived into the oldest generation, so now and then
one request waited that long (an HTTP p99 spike). Frozen once the app has started, those objects are never
walked again; a first generation of 10,000 objects instead of 700 collects about a tenth as often. The
consumer processes do the same (outbox.runner.settle_heap; docs/benchmarks.md, session 18).
"""

from __future__ import annotations

import gc


def settle_heap(*_: object) -> None:
    """An on_startup hook (it ignores the app it is given): collect once, freeze, raise the threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
