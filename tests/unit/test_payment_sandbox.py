"""Unit tests for the provider sandbox's decisions (apps/payment_sandbox/provider.py) on a throwaway ledger
file: test tokens, idempotency keys, capture/void/refund rules, and a ledger that survives a reopen."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from apps.common.http_server import QuietServer
from apps.common.settings import SettingError
from apps.payment_sandbox.__main__ import main as sandbox_main
from apps.payment_sandbox.ledger import Ledger
from apps.payment_sandbox.provider import Provider

pytestmark = pytest.mark.unit

AUTH = "/v1/authorizations"


def authorization(token: str, reference: str = "order-1", amount: int = 1234) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD", "source": token, "reference": reference}


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def provider(ledger_file: Path) -> Iterator[Provider]:
    ledger = Ledger(ledger_file)
    try:
        yield Provider(ledger)
    finally:
        ledger.close()


def test_tok_visa_approves_and_the_same_key_answers_the_same_without_a_second_charge(provider: Provider) -> None:
    first = provider.call("k1", AUTH, authorization("tok_visa"))
    again = provider.call("k1", AUTH, authorization("tok_visa"))
    assert first.status_code == 201
    assert first.body["status"] == "authorized"
    assert again == first
    books = provider.ledger.for_reference("order-1")
    assert len(books["authorizations"]) == 1
    assert books["live_authorizations"] == 1
    assert [r["replayed"] for r in books["authorizations"][0]["requests"]] == [0, 1]


def test_the_same_key_with_other_parameters_is_refused(provider: Provider) -> None:
    provider.call("k1", AUTH, authorization("tok_visa"))
    reused = provider.call("k1", AUTH, authorization("tok_visa", amount=999))
    assert reused.status_code == 400
    assert reused.body["error"]["code"] == "idempotency_key_reused"
    assert len(provider.ledger.for_reference("order-1")["authorizations"]) == 1


def test_tok_charge_declined_declines_with_a_402_every_time(provider: Provider) -> None:
    declined = provider.call("k1", AUTH, authorization("tok_chargeDeclined"))
    assert declined.status_code == 402
    assert declined.body["error"]["code"] == "card_declined"
    assert provider.call("k1", AUTH, authorization("tok_chargeDeclined")) == declined
    assert provider.ledger.for_reference("order-1")["authorizations"] == []


def test_tok_flaky_fails_twice_per_key_then_approves_once(provider: Provider) -> None:
    answers = [provider.call("k1", AUTH, authorization("tok_flaky")).status_code for _ in range(4)]
    assert answers == [503, 503, 201, 201]
    assert len(provider.ledger.for_reference("order-1")["authorizations"]) == 1
    # Another key starts its own count.
    assert provider.call("k2", AUTH, authorization("tok_flaky", "order-2")).status_code == 503


def test_tok_slow_decides_at_once_but_answers_after_the_delay(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_SLOW_DELAY_S", "30")
    monkeypatch.setenv("SANDBOX_DELAYED_S", "5")
    provider = Provider(provider.ledger)  # the delays are read when it is made, as at the sandbox's start
    started = time.time()
    slow = provider.call("k1", AUTH, authorization("tok_slow"))
    assert slow.status_code == 201
    assert 30 <= slow.ready_at - started < 31
    assert provider.call("k1", AUTH, authorization("tok_slow")).ready_at == slow.ready_at
    delayed = provider.call("k2", AUTH, authorization("tok_delayed", "order-2"))
    assert delayed.status_code == 201 and 5 <= delayed.ready_at - started < 6
    assert provider.call("k3", AUTH, authorization("tok_visa", "order-3")).ready_at == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SANDBOX_SLOW_DELAY_S", "20s", "SANDBOX_SLOW_DELAY_S='20s': not a number"),
        ("SANDBOX_DELAYED_S", "five", "SANDBOX_DELAYED_S='five': not a number"),
        ("PAYMENT_SANDBOX_PORT", "80o9", "PAYMENT_SANDBOX_PORT='80o9': not an integer"),
    ],
)
def test_the_sandbox_does_not_start_with_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    """Read at its start (python -m apps.payment_sandbox): until session 34 a bad delay failed each call with
    tok_slow or tok_delayed, as a 500, and a bad port was int()'s message."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(sys, "argv", ["apps.payment_sandbox"])
    with pytest.raises(SettingError) as raised:
        sandbox_main()
    assert str(raised.value) == message


def test_unknown_tokens_and_bad_parameters_are_400s(provider: Provider) -> None:
    assert provider.call("k1", AUTH, authorization("tok_nope")).status_code == 400
    assert provider.call("k2", AUTH, authorization("tok_visa", amount=0)).status_code == 400
    assert provider.call("k3", AUTH, {**authorization("tok_visa"), "currency": "DOLLARS"}).status_code == 400


def test_capture_void_and_refunds_follow_the_authorization(provider: Provider) -> None:
    auth_id = provider.call("a", AUTH, authorization("tok_visa")).body["id"]
    assert provider.call("c0", f"{AUTH}/{auth_id}/capture", {"amount": 2000}).status_code == 400
    captured = provider.call("c1", f"{AUTH}/{auth_id}/capture", {"amount": 1000})
    assert (captured.status_code, captured.body["amount_captured"]) == (200, 1000)
    assert provider.call("v", f"{AUTH}/{auth_id}/void", {}).status_code == 409
    assert provider.call("r1", "/v1/refunds", {"authorization": auth_id, "amount": 600}).status_code == 201
    assert provider.call("r2", "/v1/refunds", {"authorization": auth_id, "amount": 401}).status_code == 400
    assert provider.call("r3", "/v1/refunds", {"authorization": auth_id, "amount": 400}).status_code == 201
    books = provider.ledger.for_reference("order-1")
    assert books["authorizations"][0]["status"] == "refunded"
    assert books["live_authorizations"] == 0


def test_a_voided_authorization_is_not_live(provider: Provider) -> None:
    auth_id = provider.call("a", AUTH, authorization("tok_visa")).body["id"]
    assert provider.call("v", f"{AUTH}/{auth_id}/void", {}).status_code == 200
    assert provider.ledger.for_reference("order-1")["live_authorizations"] == 0


def test_fail_tokens_authorize_then_refuse_only_their_operation_every_time(provider: Provider) -> None:
    ids = {
        token: provider.call(f"a-{token}", AUTH, authorization(token, f"order-{token}")).body["id"]
        for token in ("tok_captureFail", "tok_voidFail", "tok_refundFail")
    }
    capture = provider.call("c1", f"{AUTH}/{ids['tok_captureFail']}/capture", {})
    assert (capture.status_code, capture.body["error"]["code"]) == (400, "charge_expired_for_capture")
    assert provider.call("c1", f"{AUTH}/{ids['tok_captureFail']}/capture", {}) == capture  # stored per key
    void = provider.call("v1", f"{AUTH}/{ids['tok_voidFail']}/void", {})
    assert (void.status_code, void.body["error"]["code"]) == (402, "processing_error")
    # Each refuses only its own operation: the void token captures, the refund token captures too.
    assert provider.call("c2", f"{AUTH}/{ids['tok_voidFail']}/capture", {}).status_code == 200
    assert provider.call("c3", f"{AUTH}/{ids['tok_refundFail']}/capture", {}).status_code == 200
    refund = provider.call("r1", "/v1/refunds", {"authorization": ids["tok_refundFail"]})
    assert (refund.status_code, refund.body["error"]["code"]) == (402, "expired_or_canceled_card")
    held = {t: provider.ledger.for_reference(f"order-{t}")["authorizations"][0] for t in ids}
    assert {t: (a["status"], a["amount_refunded"]) for t, a in held.items()} == {
        "tok_captureFail": ("authorized", 0),
        "tok_voidFail": ("captured", 0),
        "tok_refundFail": ("captured", 0),
    }


def test_tok_refund_fail_once_refuses_the_first_refund_only_and_keeps_that_answer_for_its_key(
    provider: Provider,
) -> None:
    auth_id = provider.call("a1", AUTH, authorization("tok_refundFailOnce")).body["id"]
    assert provider.call("c1", f"{AUTH}/{auth_id}/capture", {}).status_code == 200
    refused = provider.call("r1", "/v1/refunds", {"authorization": auth_id, "amount": 500})
    assert (refused.status_code, refused.body["error"]["code"]) == (402, "expired_or_canceled_card")
    assert provider.call("r1", "/v1/refunds", {"authorization": auth_id, "amount": 500}) == refused  # stored
    # Another key (a retry's, or a refund by hand) goes through, once per key.
    refunded = provider.call("r2", "/v1/refunds", {"authorization": auth_id, "amount": 500})
    assert (refunded.status_code, refunded.body["amount"]) == (201, 500)
    assert provider.call("r2", "/v1/refunds", {"authorization": auth_id, "amount": 500}) == refunded
    [held] = provider.ledger.for_reference("order-1")["authorizations"]
    assert (held["amount_refunded"], len(held["refunds"])) == (500, 1)


def test_the_ledger_survives_a_restart(ledger_file: Path) -> None:
    ledger = Ledger(ledger_file)
    first = Provider(ledger).call("k1", AUTH, authorization("tok_visa"))
    ledger.close()
    reopened = Ledger(ledger_file)
    try:
        assert Provider(reopened).call("k1", AUTH, authorization("tok_visa")) == first
        assert len(reopened.for_reference("order-1")["authorizations"]) == 1
    finally:
        reopened.close()


def test_a_refunds_status_is_what_its_key_was_answered_or_404_when_none_was_made(provider: Provider) -> None:
    """GET /v1/refunds?idempotency_key=: the refund made under a key, the refusal stored under it, or 404
    resource_missing for a key that made nothing (never sent, or only 503s)."""
    visa = provider.call("a1", AUTH, authorization("tok_visa", "o1")).body["id"]
    provider.call("c1", f"{AUTH}/{visa}/capture", {})
    made = provider.call("r1", "/v1/refunds", {"authorization": visa, "amount": 100})
    status = provider.refund_status("r1")
    assert (status.status_code, status.body["status"], status.body["id"]) == (200, "succeeded", made.body["id"])

    failing = provider.call("a2", AUTH, authorization("tok_refundFail", "o2")).body["id"]
    provider.call("c2", f"{AUTH}/{failing}/capture", {})
    assert provider.call("r2", "/v1/refunds", {"authorization": failing}).status_code == 402
    refused = provider.refund_status("r2")
    assert (refused.status_code, refused.body["status"]) == (200, "failed")
    assert refused.body["failure_code"] == "expired_or_canceled_card"

    assert provider.refund_status("never-sent").status_code == 404
    assert provider.refund_status("c1").status_code == 404  # a capture's key is no refund


def test_refunds_never_answered_one_made_and_one_not(provider: Provider) -> None:
    """tok_refundNoAnswer: the refund is made but every answer is a 503 (the first and every replay);
    tok_refundUnreachable: never made, every call a 503. The status query tells them apart."""
    lost = provider.call("a1", AUTH, authorization("tok_refundNoAnswer", "o1")).body["id"]
    provider.call("c1", f"{AUTH}/{lost}/capture", {})
    for _ in range(3):
        assert provider.call("r1", "/v1/refunds", {"authorization": lost, "amount": 100}).status_code == 503
    assert provider.refund_status("r1").body["status"] == "succeeded"
    [auth] = provider.ledger.for_reference("o1")["authorizations"]
    assert [r["amount"] for r in auth["refunds"]] == [100]  # made once, however often asked

    gone = provider.call("a2", AUTH, authorization("tok_refundUnreachable", "o2")).body["id"]
    provider.call("c2", f"{AUTH}/{gone}/capture", {})
    for _ in range(3):
        assert provider.call("r2", "/v1/refunds", {"authorization": gone}).status_code == 503
    assert provider.refund_status("r2").status_code == 404
    [auth] = provider.ledger.for_reference("o2")["authorizations"]
    assert auth["refunds"] == [] and auth["amount_refunded"] == 0


def test_the_http_api_takes_post_v1_refunds_beside_the_get_status_query(
    ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /v1/refunds made /v1/refunds a route of its own; POST on it must still reach the provider (a 405
    there failed every refund of the stack for a few minutes in session 28)."""
    from litestar.testing import TestClient

    from apps.payment_sandbox.app import create_app

    monkeypatch.setenv("PAYMENT_SANDBOX_DB", str(ledger_file))
    with TestClient(create_app()) as client:
        auth = client.post(AUTH, json=authorization("tok_visa"), headers={"Idempotency-Key": "a"}).json()["id"]
        assert client.post(f"{AUTH}/{auth}/capture", json={}, headers={"Idempotency-Key": "c"}).status_code == 200
        made = client.post("/v1/refunds", json={"authorization": auth, "amount": 34}, headers={"Idempotency-Key": "r"})
        assert made.status_code == 201, made.text
        status = client.get("/v1/refunds", params={"idempotency_key": "r"})
        assert (status.status_code, status.json()["id"]) == (200, made.json()["id"])
        assert client.get("/v1/refunds", params={"idempotency_key": "none"}).status_code == 404


def test_tok_refund_unreachable_once_never_makes_the_first_refund_and_makes_the_later_ones(provider: Provider) -> None:
    """A refund by hand the provider never got (the first key asked: 503 for good, 404 to the status query),
    then a return's refund under another key that it makes (session 29's unblocked retry, e2e)."""
    auth = provider.call("a1", AUTH, authorization("tok_refundUnreachableOnce", "o1")).body["id"]
    provider.call("c1", f"{AUTH}/{auth}/capture", {})
    for _ in range(3):
        assert provider.call("r1", "/v1/refunds", {"authorization": auth, "amount": 100}).status_code == 503
    assert provider.refund_status("r1").status_code == 404
    made = provider.call("r2", "/v1/refunds", {"authorization": auth, "amount": 200})
    assert made.status_code == 201 and made.body["amount"] == 200
    assert provider.call("r1", "/v1/refunds", {"authorization": auth, "amount": 100}).status_code == 503  # still
    [books] = provider.ledger.for_reference("o1")["authorizations"]
    assert [r["amount"] for r in books["refunds"]] == [200]


def test_an_outage_answers_its_5xx_or_holds_calls_and_ends(provider: Provider) -> None:
    assert provider.outage() is None
    for bad in ({"seconds": -1, "status": 503}, {"seconds": 10, "status": 404}, {"seconds": 10}):
        with pytest.raises(ValueError):
            provider.set_outage(**bad)
    with pytest.raises(ValueError):
        provider.set_outage(10, delay_s=61)
    down = provider.set_outage(30, status=502)
    assert down is not None and provider.outage() == down
    refusal = down.refusal()
    assert refusal is not None and refusal.status_code == 502
    slow = provider.set_outage(30, delay_s=4)
    assert slow is not None and slow.refusal() is None and slow.delay_s == 4
    assert provider.set_outage(0) is None and provider.outage() is None
    provider.set_outage(0.01, status=503)
    import time

    time.sleep(0.02)
    assert provider.outage() is None  # over by itself


def test_the_http_api_during_an_outage_decides_nothing_then_answers_again(
    ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5xx outage: the call is logged, nothing is decided or stored, so the same key after it is decided
    once; a slow one: held, then decided (a caller that gave up meanwhile gets the answer on its retry)."""
    from litestar.testing import TestClient

    from apps.payment_sandbox.app import create_app

    monkeypatch.setenv("PAYMENT_SANDBOX_DB", str(ledger_file))
    with TestClient(create_app()) as client:
        assert client.post("/sandbox/outage", json={"seconds": 60, "status": 404}).status_code == 400
        assert client.post("/sandbox/outage", json={"seconds": 60, "status": 503}).json()["outage"]["status"] == 503
        down = client.post(AUTH, json=authorization("tok_visa"), headers={"Idempotency-Key": "a"})
        assert down.status_code == 503
        assert client.get("/v1/refunds", params={"idempotency_key": "r"}).status_code == 503
        assert client.post("/sandbox/outage", json={"seconds": 0}).json() == {"outage": None}
        made = client.post(AUTH, json=authorization("tok_visa"), headers={"Idempotency-Key": "a"})
        assert made.status_code == 201
        client.post("/sandbox/outage", json={"seconds": 60, "delay_s": 0.2})
        assert client.get("/sandbox/outage").json()["outage"]["delay_s"] == 0.2
        again = client.post(AUTH, json=authorization("tok_visa"), headers={"Idempotency-Key": "a"})
        assert again.json() == made.json()
        [auth] = client.get("/v1/ledger", params={"reference": "order-1"}).json()["authorizations"]
        assert [r["status_code"] for r in auth["requests"]] == [503, 201, 201]  # the outage's 503 logged, one decision


def test_a_decision_and_its_stored_answer_are_written_together(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox killed between a refund's row and the answer stored under its key (kill -9 runs, session 29)
    left the refund made and no answer: the caller's retry with the key made it a second time."""
    auth = provider.call("a1", AUTH, authorization("tok_visa", "o1")).body["id"]
    provider.call("c1", f"{AUTH}/{auth}/capture", {})
    store = provider.ledger.store

    def killed(*args: Any) -> None:
        raise SystemExit("killed between the refund and its answer")

    monkeypatch.setattr(provider.ledger, "store", killed)
    with pytest.raises(SystemExit):
        provider.call("r1", "/v1/refunds", {"authorization": auth, "amount": 100})
    monkeypatch.setattr(provider.ledger, "store", store)
    assert provider.call("r1", "/v1/refunds", {"authorization": auth, "amount": 100}).status_code == 201
    assert provider.call("r1", "/v1/refunds", {"authorization": auth, "amount": 100}).status_code == 201
    [books] = provider.ledger.for_reference("o1")["authorizations"]
    assert [r["amount"] for r in books["refunds"]] == [100] and books["amount_refunded"] == 100


def test_the_sandbox_is_served_by_the_quiet_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its server ticks once a second as the APIs' do (uvicorn's own woke an idle sandbox ten times a second)."""
    served: list[tuple[type[uvicorn.Server], uvicorn.Config]] = []

    def run(self: uvicorn.Server, sockets: object = None) -> None:
        served.append((type(self), self.config))
        self.started = True

    monkeypatch.setattr(QuietServer, "run", run)
    monkeypatch.setattr(sys, "argv", ["apps.payment_sandbox", "--port", "18999"])
    sandbox_main()
    ((kind, config),) = served
    assert kind is QuietServer
    assert (config.app, config.factory, config.port, config.access_log) == (
        "apps.payment_sandbox.app:create_app",
        True,
        18999,
        False,
    )
