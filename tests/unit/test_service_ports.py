"""A service moved with ``<SERVICE>_PORT`` is started there and called there by the other services."""

from __future__ import annotations

import pytest

from apps.common.service_client import service_base_url
from apps.common.topology import BY_NAME
from infra.stack import app_processes

pytestmark = pytest.mark.unit


def api_url(name: str) -> str | None:
    return next(process.url for process in app_processes() if process.name == f"{name}-api")


def test_by_default_a_service_is_called_where_the_stack_starts_it() -> None:
    assert service_base_url("catalog") == api_url("catalog") == f"http://127.0.0.1:{BY_NAME['catalog'].port}"


def test_a_port_override_moves_the_api_and_its_callers_together(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the stack started catalog-api on CATALOG_PORT while order, checkout and the warehouse still
    # called 8001.
    monkeypatch.setenv("CATALOG_PORT", "9301")
    assert service_base_url("catalog") == api_url("catalog") == "http://127.0.0.1:9301"
    consumer = next(process for process in app_processes() if process.name == "customer-consumer")
    assert consumer.url == f"http://127.0.0.1:{BY_NAME['customer'].port + 100}/metrics"


def test_a_url_names_a_service_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_PORT", "9301")
    monkeypatch.setenv("CATALOG_URL", "http://catalog.internal:8001")
    assert service_base_url("catalog") == "http://catalog.internal:8001"
