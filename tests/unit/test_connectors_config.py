"""connectors/*.json and infra/compose/initdb.sql agree with the topology, the outbox settings and
infra/postgres.py, from which they are written or deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.common.topology import CDC_PASSWORD_ENV, SERVICES, ServiceSpec, cdc_password
from infra import connectors, postgres
from outbox.config import load_settings, settings, topic_for

REPO = Path(__file__).resolve().parents[2]
CONNECTORS = REPO / "connectors"
# The aggregates some event is written for (the committed catalogue, itself checked against the code).
EMITTED = {
    event["aggregate"] for event in json.loads((REPO / "docs/events/catalogue.json").read_text())["events"].values()
}
STREAMED = [spec for spec in SERVICES if set(spec.aggregates) & EMITTED]


def test_exactly_the_services_that_write_events_have_a_connector() -> None:
    # A connector costs a walsender decoding every WAL record of the cluster and a Connect task: one per
    # outbox that something writes, none for an outbox nothing writes (analytics).
    assert {path.stem for path in CONNECTORS.glob("*.json")} == {spec.name for spec in STREAMED}
    assert {spec.name for spec in SERVICES} - {spec.name for spec in STREAMED} == {"analytics"}


def test_a_retired_connector_is_no_longer_deployed_and_its_slot_is_named() -> None:
    deployed = {connectors.load(path, {})[0] for path in connectors.connector_files()}
    by_slot = {spec.slot: spec for spec in SERVICES}
    for name, (database, slot) in connectors.RETIRED.items():
        assert name not in deployed
        assert by_slot[slot].database == database and not set(by_slot[slot].aggregates) & EMITTED
    assert connectors.slot_names() == {spec.slot for spec in STREAMED}


@pytest.mark.parametrize("spec", STREAMED, ids=lambda spec: spec.name)
def test_each_service_database_has_its_own_outbox_connector(spec: ServiceSpec) -> None:
    body = json.loads((CONNECTORS / f"{spec.name}.json").read_text())
    config = body["config"]
    assert body["name"] == f"{spec.name}-outbox"
    assert config["database.dbname"] == spec.database
    assert config["slot.name"] == spec.slot
    assert config["publication.name"] == spec.publication
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == "public.event_store"
    assert config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    # The payload goes to Kafka as the JSONB text PostgreSQL sent: parsing it into a Connect struct and
    # encoding it again cost ~a quarter of Connect's CPU per event and changed nothing a consumer reads.
    assert config["transforms.outbox.table.expand.json.payload"] == "false"
    assert config["value.converter"] == "org.apache.kafka.connect.storage.StringConverter"
    assert "heartbeat.action.query" in config
    # Debezium's own context headers (__debezium.context.*) would double the headers each consumer decodes
    assert config["extended.headers.enabled"] == "false"
    assert config["topic.creation.default.cleanup.policy"] == "delete"


def test_no_connector_file_holds_a_literal_password() -> None:
    for path in CONNECTORS.glob("*.json"):
        config = json.loads(path.read_text())["config"]
        assert config["database.password"].startswith("${env:"), path.name


def test_a_snapshot_reads_each_aggregates_events_in_version_order() -> None:
    """A snapshot (the first deploy's, or a re-snapshot with snapshot.mode=when_needed after a lost slot: README,
    Reliability) reads event_store with Debezium's plain SELECT, in heap order, and heap order is not version
    order (W33-2: 216 of 30,381 same-aggregate pairs in live order_db stored later-version-first). On a throwaway
    PostgreSQL, 50 aggregates x 3 versions stored newest-first: 100 of 150 records later-version-first without
    the override, 0 with it. Streaming stays in commit order; only snapshots read through it."""
    for path in sorted(CONNECTORS.glob("*.json")):
        config = json.loads(path.read_text())["config"]
        assert config["snapshot.select.statement.overrides"] == "public.event_store", path.name
        assert config["snapshot.select.statement.overrides.public.event_store"] == (
            "SELECT * FROM public.event_store ORDER BY aggregate_id, event_version"
        ), path.name


def test_every_connector_routes_to_the_projects_topic_prefix() -> None:
    # The files work as they are (curl -d "$(jq .config ...)"), so their literal must be the project's prefix.
    project_prefix = load_settings(REPO).topic_prefix
    assert project_prefix == "commerce"
    for path in sorted(CONNECTORS.glob("*.json")):
        config = json.loads(path.read_text())["config"]
        assert config[connectors.TOPIC_REPLACEMENT] == f"{project_prefix}.${{routedByValue}}", path.name
        assert config[connectors.TOPIC_REPLACEMENT].replace("${routedByValue}", "order") == topic_for("order")


def test_the_deploy_fills_in_the_topic_prefix_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOX_TOPIC_PREFIX", "staging")
    _, config = connectors.load(CONNECTORS / "order.json", {})
    assert config[connectors.TOPIC_REPLACEMENT] == "staging.${routedByValue}"
    assert topic_for("order") == "staging.order"


def test_outbox_settings_come_from_the_projects_pyproject() -> None:
    project = settings()
    assert project.packages == ("apps",)
    assert project.catalogue_json == Path("docs/events/catalogue.json")
    assert project.catalogue_markdown == Path("docs/events/README.md")


def test_without_a_project_table_the_library_assumes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTBOX_CONFIG", raising=False)
    bare = load_settings(tmp_path)
    assert (bare.packages, bare.catalogue_json, bare.topic_prefix) == ((), None, "outbox.event")


def test_compose_initdb_is_generated_from_infra_postgres() -> None:
    committed = (REPO / "infra" / "compose" / "initdb.sql").read_text()
    assert committed == postgres.initdb_sql(), "run `python -m infra.postgres initdb-sql > infra/compose/initdb.sql`"
    for spec in SERVICES:
        assert f"CREATE DATABASE {spec.database} OWNER {spec.role};" in committed


def test_initdb_uses_the_same_local_passwords_as_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CDC_PASSWORD_ENV, raising=False)
    assert cdc_password() == postgres.DEFAULT_CDC_PASSWORD
    for spec in SERVICES:
        monkeypatch.delenv(spec.password_env, raising=False)
        assert postgres._local_password(spec) == spec.password()


# The connector of the order's own events, and of the events the order saga reads (checkout.completed creates
# the order, inventory.* and payment.* move it): every poll interval on them lies on an order's way from
# checkout to the stats. A connector's poll costs CPU whether or not anything arrived, and a record waits up
# to two intervals (the replication stream's sleep, then the task's queue).
ORDER_PATH_POLL_MS = 100
# Any other read topic: its events (customers, products, returns) are not on an order's path, and each idle
# connector at 100 ms cost Connect 7-9 ms/s under load (session 28). A new customer missing from the order's
# read model is asked of the customer service, a product's price holds ORDER_PRICE_MAX_AGE_S whatever the
# pipeline's delay, and a return's next step waits under a second more.
OFF_PATH_POLL_MS = 500


def _order_path_topics() -> set[str]:
    from outbox import groups

    saga = next(module.group for module in groups.consumer_modules() if module.group.name == "order-saga")
    return {*saga.topics, topic_for("order")}


@pytest.mark.parametrize("spec", STREAMED, ids=lambda spec: spec.name)
def test_a_connector_polls_slowly_only_when_its_events_are_off_the_orders_path(spec: ServiceSpec) -> None:
    from outbox import groups

    config = json.loads((CONNECTORS / f"{spec.name}.json").read_text())["config"]
    own = {topic_for(aggregate) for aggregate in spec.aggregates}
    read = {topic for module in groups.consumer_modules() for topic in module.group.topics}
    poll = int(config["poll.interval.ms"])
    if own & _order_path_topics():
        assert poll <= ORDER_PATH_POLL_MS, spec.name
    elif own & read:
        assert poll <= OFF_PATH_POLL_MS, spec.name


def test_the_order_path_is_the_order_checkout_warehouse_and_payment_connectors() -> None:
    # If the saga starts reading another service's events, that connector joins the order's path (and the
    # rule above holds it to ORDER_PATH_POLL_MS); this names the set so such a change is seen here.
    on_path = {spec.name for spec in STREAMED if {topic_for(a) for a in spec.aggregates} & _order_path_topics()}
    assert on_path == {"order", "checkout", "warehouse", "payment"}
