"""The seed's pool limits are per service, whatever its worker count."""

from __future__ import annotations

import pytest

from apps.common.db import PoolSettings


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
def test_workers_together_never_open_more_than_the_service_limit(workers: int) -> None:
    seed = PoolSettings()
    each = seed.per_worker(workers)
    assert workers * (each.size + each.max_overflow) <= seed.size + seed.max_overflow == 25
    assert each.size >= 1 and each.max_overflow >= 0


def test_one_worker_keeps_the_seed_settings_and_two_split_them() -> None:
    assert PoolSettings().per_worker(1) == PoolSettings()
    two = PoolSettings().per_worker(2)
    assert (two.size, two.max_overflow, two.idle_timeout_s, two.recycle_s) == (12, 0, 60, 300)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "4")
    monkeypatch.setenv("DB_POOL_IDLE_TIMEOUT_S", "30")
    settings = PoolSettings.from_env()
    assert (settings.size, settings.max_overflow, settings.idle_timeout_s) == (4, 0, 30)
