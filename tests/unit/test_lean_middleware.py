"""The request path's middleware read the scope instead of building a Request per request (issue 11): the
metrics and the rate limit's decisions must stay exactly those of Litestar's own code."""

from __future__ import annotations

import types
import uuid
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.params import FromPath
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.plugins.prometheus import middleware as litestar_metrics
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from apps.common import logs
from apps.common.auth import Principal
from apps.common.logs import SentStatusPrometheusMiddleware
from apps.common.rate_limit import IdentityRateLimitMiddleware, RateLimitPlugin, _identity_in, _should_limit
from apps.common.topology import BY_NAME

# The time each request's handler takes, by thing id: both middlewares read the clock below, which only a
# handler moves, so each request's duration is exactly this (powers of two: the sums compare exactly), and
# the three land in three different buckets (le 0.005, 0.25 and 2.5). With the real clock the two runs'
# buckets differed under load (le=0.005 held 2 vs 1): 79 of 200 runs failed beside 4 busy processes.
TAKES_S = {1: 2.0**-9, 2: 2.0**-3, 500: 1.5}
CLOCK = [1000.0]


@get("/api/things/{thing_id:int}", sync_to_thread=False)
def thing(thing_id: FromPath[int]) -> dict[str, int]:
    CLOCK[0] += TAKES_S.get(thing_id, 0.0)
    if thing_id == 500:
        raise RuntimeError("boom")
    return {"id": thing_id}


def _samples(prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a prefix's metrics (the prefix stripped) but the series' creation times (wall time)."""
    found = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name.startswith(prefix) and not sample.name.endswith("_created"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "app_name"))
                found[(sample.name.removeprefix(prefix), labels)] = sample.value
    return found


def _run(middleware_class: type[PrometheusMiddleware], prefix: str) -> None:
    config = PrometheusConfig(app_name=prefix, prefix=prefix, group_path=True, middleware_class=middleware_class)
    app = Litestar([thing], middleware=[config.middleware], logging_config=None)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/api/things/1", "/api/things/2", "/api/things/500", "/api/things/x"):
            client.get(path)


def test_the_lean_metrics_path_counts_what_litestars_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each module's own `time` name, not the time module: the test client's threads keep the real clock.
    clock = types.SimpleNamespace(perf_counter=lambda: CLOCK[0])
    monkeypatch.setattr(litestar_metrics, "time", clock)
    monkeypatch.setattr(logs, "time", clock)
    stock, lean = f"stock{uuid.uuid4().hex[:8]}", f"lean{uuid.uuid4().hex[:8]}"
    _run(PrometheusMiddleware, stock)
    _run(SentStatusPrometheusMiddleware, lean)
    counted = _samples(lean)
    assert counted == _samples(stock)
    route = (("method", "GET"), ("path", "/api/things/{thing_id}"))
    ok, failed = (*route, ("status_code", "200")), (*route, ("status_code", "500"))
    assert counted[("_requests_total", ok)] == 2
    assert counted[("_requests_error_total", failed)] == 1
    assert counted[("_requests_in_progress", ok)] == 0
    # The durations placed as fed in (so the clock above is the one both read), buckets being cumulative.
    buckets = "_request_duration_seconds_bucket"
    assert [counted[(buckets, (("le", le), *ok))] for le in ("0.005", "0.1", "0.25")] == [1, 1, 2]
    assert counted[(buckets, (("le", "1.0"), *failed))] == 0
    assert counted[(buckets, (("le", "2.5"), *failed))] == 1
    assert counted[("_request_duration_seconds_sum", ok)] == TAKES_S[1] + TAKES_S[2]
    assert counted[("_request_duration_seconds_sum", failed)] == TAKES_S[500]


@post("/api/things", sync_to_thread=False)
def place() -> None:
    return None


APP = Litestar([place, thing], logging_config=None)
CUSTOMER = Principal(subject="c", role="customer", customer_id=uuid.uuid4())


@pytest.mark.parametrize(
    ("method", "path", "user", "client"),
    [
        ("POST", "/api/things", CUSTOMER, ("10.0.0.1", 1)),
        ("POST", "/api/things", None, ("10.0.0.2", 1)),
        ("POST", "/api/things", None, None),
        ("POST", "/api/things", Principal(subject="s", role="staff"), ("10.0.0.3", 1)),
        ("POST", "/api/things", Principal(subject="svc", role="service", service="order"), None),
        ("GET", "/api/things/1", CUSTOMER, ("10.0.0.1", 1)),
        ("POST", "/api/internal/things", CUSTOMER, ("10.0.0.1", 1)),
        ("POST", "/health", None, ("10.0.0.1", 1)),
    ],
)
async def test_the_rate_limit_decides_from_the_scope_as_from_a_request(
    method: str, path: str, user: Principal | None, client: tuple[str, int] | None
) -> None:
    """Whether a request counts, and the key it counts under, as Litestar's Request-based hooks say."""
    counted: list[str] = []

    class Recording(IdentityRateLimitMiddleware):
        def _count(self, key: str) -> None:
            counted.append(key)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    config = RateLimitPlugin(BY_NAME["order"]).config()
    middleware = Recording(inner, config)
    handler = APP.route_handler_method_map["/api/things"]["POST"]
    scope: Any = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "client": client,
        "user": user,
        "litestar_app": APP,
        "app": APP,
        "route_handler": handler,
        "state": {},
    }
    request = APP.request_class(scope)
    expected = [middleware.cache_key_from_request(request)] if await _should_limit(request) else []
    await middleware(scope, None, None)  # type: ignore[arg-type]
    assert counted == expected
    assert (_identity_in(scope) is not None) == (user is None or user.role == "customer")
