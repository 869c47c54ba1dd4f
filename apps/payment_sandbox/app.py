"""The sandbox provider's HTTP API, shaped like a card provider's (run: python -m apps.payment_sandbox).

    POST /v1/authorizations                 {amount, currency, source: token, reference}  201 | 402 declined
    POST /v1/authorizations/{id}/capture    {amount?}                                     200
    POST /v1/authorizations/{id}/void       {}                                            200
    POST /v1/refunds                        {authorization, amount?}                      201
    GET  /v1/refunds?idempotency_key=       what became of that refund: 200 {status: succeeded | failed}
                                            404 resource_missing (never made)
    GET  /v1/ledger?reference=              authorizations made for a reference, live count, requests
    POST /sandbox/outage                    {seconds, status?: 5xx, delay_s?}: for that long every call
                                            above is answered that 5xx (nothing decided) or held delay_s
                                            before it is decided; seconds 0 ends it. GET: the current one
    GET  /health

Every POST needs an Idempotency-Key header. Errors are {"error": {type, code, message}}.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State

from apps.payment_sandbox.ledger import Answer, Ledger
from apps.payment_sandbox.provider import Outage, Provider, SandboxSettings, error

__all__ = ["create_app", "ledger_path"]

REPO = Path(__file__).resolve().parent.parent.parent


def ledger_path(settings: SandboxSettings | None = None) -> Path:
    configured = (settings or SandboxSettings.from_env()).ledger_file
    return Path(configured or REPO / ".stack" / "payment-sandbox" / "ledger.sqlite3")


def _respond(answer: Answer) -> Response[Any]:
    return Response(answer.body, status_code=answer.status_code)


@post("/v1/{path:path}", status_code=200)
async def provider_call(request: Request[Any, Any, Any], path: str, state: State) -> Response[Any]:
    return await _call(request, path, state)


# GET /v1/refunds (the status query) makes /v1/refunds a route of its own: without this POST on it, the
# catch-all above would no longer see POST /v1/refunds (405).
@post("/v1/refunds", status_code=200)
async def refund_call(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return await _call(request, "refunds", state)


async def _call(request: Request[Any, Any, Any], path: str, state: State) -> Response[Any]:
    key = request.headers.get("idempotency-key", "")
    if not key or len(key) > 255:
        return _respond(error(400, "invalid_request_error", "idempotency_key_missing", "Idempotency-Key is required"))
    try:
        params = msgspec.json.decode(await request.body() or b"{}")
    except msgspec.DecodeError:
        params = None
    if not isinstance(params, dict):
        return _respond(error(400, "invalid_request_error", "body_invalid", "the body must be a JSON object"))
    provider: Provider = state.provider
    full = f"/v1/{path.strip('/')}"
    if (held := await _outage(provider)) is not None:
        provider.ledger.log_request(key, full, held.status_code, replayed=False)
        return _respond(held)
    answer = provider.call(key, full, params)
    # tok_slow: the decision is made and stored already; only the answer waits (for every caller of the key).
    delay = answer.ready_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    return _respond(answer)


async def _outage(provider: Provider) -> Answer | None:
    """During an outage: its 5xx, or None after holding the call its delay."""
    outage = provider.outage()
    if outage is None:
        return None
    if (refusal := outage.refusal()) is not None:
        return refusal
    await asyncio.sleep(outage.delay_s)
    return None


@get("/v1/refunds")
async def refund_status(idempotency_key: str, state: State) -> Response[Any]:
    provider: Provider = state.provider
    if (held := await _outage(provider)) is not None:
        return _respond(held)
    return _respond(provider.refund_status(idempotency_key))


class OutageRequest(msgspec.Struct, forbid_unknown_fields=True):
    seconds: float
    status: int | None = None
    delay_s: float = 0.0


@post("/sandbox/outage", status_code=200)
async def start_outage(data: OutageRequest, state: State) -> Response[Any]:
    provider: Provider = state.provider
    try:
        outage = provider.set_outage(data.seconds, status=data.status, delay_s=data.delay_s)
    except ValueError as exc:
        return _respond(error(400, "invalid_request_error", "parameter_invalid", str(exc)))
    return Response(_outage_body(outage), status_code=200)


@get("/sandbox/outage")
async def current_outage(state: State) -> dict[str, Any]:
    provider: Provider = state.provider
    return _outage_body(provider.outage())


def _outage_body(outage: Outage | None) -> dict[str, Any]:
    if outage is None:
        return {"outage": None}
    left = max(0.0, outage.until - time.time())
    return {"outage": {"seconds_left": round(left, 1), "status": outage.status, "delay_s": outage.delay_s}}


@get("/v1/ledger")
async def ledger_for(reference: str, state: State) -> dict[str, Any]:
    provider: Provider = state.provider
    return provider.ledger.for_reference(reference)


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@asynccontextmanager
async def _open_ledger(app: Litestar) -> AsyncIterator[None]:
    settings = SandboxSettings.from_env()
    ledger = Ledger(ledger_path(settings))
    app.state.provider = Provider(ledger, settings)
    try:
        yield
    finally:
        ledger.close()


def create_app() -> Litestar:
    return Litestar(
        route_handlers=[
            provider_call,
            refund_call,
            refund_status,
            start_outage,
            current_outage,
            ledger_for,
            health,
        ],
        lifespan=[_open_ledger],
        openapi_config=None,
    )
