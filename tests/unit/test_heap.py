"""The service workers' collector watch: a slow collection is logged with its generation, wall and CPU time."""

from __future__ import annotations

import gc
import logging

import pytest

from apps.common.heap import _CollectionTimer, watch_collections


def test_a_collection_over_the_threshold_is_logged_with_its_times(caplog: pytest.LogCaptureFixture) -> None:
    before = list(gc.callbacks)
    try:
        watch_collections(slow_ms=0)
        watch_collections(slow_ms=0)  # a second call replaces the first: one timer, one line per collection
        assert sum(isinstance(c, _CollectionTimer) for c in gc.callbacks) == 1
        with caplog.at_level(logging.WARNING, logger="apps.heap"):
            gc.collect(0)
        (record,) = [r for r in caplog.records if r.name == "apps.heap"]
        assert record.generation == 0  # type: ignore[attr-defined]
        assert record.duration_ms >= 0 and record.cpu_ms >= 0  # type: ignore[attr-defined]
    finally:
        gc.callbacks[:] = before
