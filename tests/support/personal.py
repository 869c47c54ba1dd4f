"""Tests' view of personal data in events (apps/common/personal.py): fetch a person's data key the way a
service does (the customer service's service-only route, with a service token) and open envelopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from apps.common.personal import DataKey, open_fields, unwrap_data_key
from tests.support.http import api_client, service_url

__all__ = ["DATA_KEY_SCOPE", "data_key", "opened"]

DATA_KEY_SCOPE: Final = "customer:data-keys"


async def data_key(subject: str) -> DataKey | None:
    """The subject's data key; None once destroyed (410) or never made (404)."""
    async with api_client("service", scopes=[DATA_KEY_SCOPE], base_url=service_url("customer")) as http:
        response = await http.get(f"/api/internal/data-keys/{subject}")
    if response.status_code in (404, 410):
        return None
    assert response.status_code == 200, response.text
    body = response.json()
    return unwrap_data_key(body["subject"], body["kid"], body["key"])


async def opened(payload: Mapping[str, Any], fields: Iterable[str], subject: str, prefix: str = "") -> dict[str, Any]:
    """``payload`` with ``fields`` opened with the subject's key ([erased] once it is destroyed)."""
    return open_fields(await data_key(subject), prefix, payload, fields)
