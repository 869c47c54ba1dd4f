"""Each service's token holds only the scopes it uses (security review, session 28): payment and customer
held customer:data-keys, which answers any person's raw data key, without ever asking for one."""

from __future__ import annotations

from pathlib import Path

from apps.common.auth_service import SERVICE_SCOPES

APPS = Path(__file__).resolve().parents[2] / "apps"
# What a service's code uses when it asks the customer service for data keys (apps/common/data_keys.py).
ASKS_FOR_DATA_KEYS = ("apps.common.data_keys",)


def _asks_for_data_keys(service: str) -> bool:
    return any(marker in path.read_text() for path in (APPS / service).rglob("*.py") for marker in ASKS_FOR_DATA_KEYS)


def test_only_the_services_that_ask_for_data_keys_hold_their_scope() -> None:
    holders = {service for service, scopes in SERVICE_SCOPES.items() if "customer:data-keys" in scopes}
    askers = {service for service in SERVICE_SCOPES if _asks_for_data_keys(service)}
    assert holders == askers == {"order", "checkout", "returns"}
