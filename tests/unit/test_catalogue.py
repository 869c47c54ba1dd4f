"""Unit tests for outbox.catalogue: schema export, compatibility rules, docs page and CLI."""

from __future__ import annotations

# msgspec resolves struct annotations at runtime, so these stay real imports despite ruff's TC003.
import datetime as dt
import decimal
import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import pytest

from outbox.catalogue import (
    build_catalogue,
    check_compatibility,
    contracts,
    discover_event_modules,
    dump_catalogue,
    main,
    render_markdown,
)
from outbox.events import Event, EventRegistry, default_registry

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.unit


# Each class below is one schema "as the code looked at some point". A registry built from a few of
# them plays the committed catalogue, another plays the current code. msgspec resolves the postponed
# annotations against module globals, hence module-level classes.


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One reserved item."""

    sku: str
    quantity: int


class ItemWithoutQuantity(msgspec.Struct, frozen=True, kw_only=True):
    """One reserved item that lost its quantity."""

    sku: str


class PaymentCapturedV1(Event, frozen=True, kw_only=True):
    """A payment was captured."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: str = "EUR"


class PaymentCapturedV1Edited(Event, frozen=True, kw_only=True):
    """A renamed class with a reworded docstring: same wire format as PaymentCapturedV1."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: str = "EUR"


class PaymentCapturedV1Changed(Event, frozen=True, kw_only=True):
    """Version 1 edited in place: a new required field."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: str = "EUR"
    provider: str


class PaymentCapturedV2Optional(Event, frozen=True, kw_only=True):
    """Version 2 adding an optional field."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: str = "EUR"
    provider_reference: str | None = None


class PaymentCapturedV2Required(Event, frozen=True, kw_only=True):
    """Version 2 adding a required field."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: str = "EUR"
    provider_reference: str


class PaymentCapturedV2Removed(Event, frozen=True, kw_only=True):
    """Version 2 dropping the required amount."""

    payment_id: uuid.UUID
    currency: str = "EUR"


class PaymentCapturedV2Retyped(Event, frozen=True, kw_only=True):
    """Version 2 turning money into a float."""

    payment_id: uuid.UUID
    amount: float
    currency: str = "EUR"


class PaymentCapturedV2DroppedOptional(Event, frozen=True, kw_only=True):
    """Version 2 dropping the optional currency."""

    payment_id: uuid.UUID
    amount: decimal.Decimal


class PaymentCapturedV2Stricter(Event, frozen=True, kw_only=True):
    """Version 2 making the optional currency required."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: str


class PaymentCapturedV2Enum(Event, frozen=True, kw_only=True):
    """Version 2 narrowing currency to a literal."""

    payment_id: uuid.UUID
    amount: decimal.Decimal
    currency: Literal["EUR", "USD"] = "EUR"


class StockReservedV1(Event, frozen=True, kw_only=True):
    """Stock was reserved."""

    reservation_id: uuid.UUID
    items: list[Item]
    note: str | None = None


class StockReservedV2(Event, frozen=True, kw_only=True):
    """Version 2 whose items lost a required field."""

    reservation_id: uuid.UUID
    items: list[ItemWithoutQuantity]
    note: str | None = None


class Tree(msgspec.Struct, frozen=True, kw_only=True):
    """A recursive structure."""

    label: str
    children: list[Tree] = []


class CategoryDefinedV1(Event, frozen=True, kw_only=True):
    """A category tree was defined."""

    root: Tree


class CategoryDefinedV2(Event, frozen=True, kw_only=True):
    """Version 2 with an optional owner."""

    root: Tree
    owner: str | None = None


class Stop(msgspec.Struct, frozen=True, kw_only=True):
    """One stop of a shipment."""

    place: str
    reached_at: dt.datetime


class ShipmentSentV1(Event, frozen=True, kw_only=True):
    """A shipment left, with its times in every position a field can hold one."""

    shipment_id: uuid.UUID
    sent_at: dt.datetime
    stops: list[Stop]
    eta: dt.datetime | None = None
    aware: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None
    naive: Annotated[dt.datetime, msgspec.Meta(tz=False)] | None = None
    window: tuple[dt.time, dt.time] | None = None
    by_depot: dict[str, dt.datetime] = {}


class ShipmentSentV1AsText(ShipmentSentV1, frozen=True, kw_only=True):
    """Version 1 edited in place: the send time became free text."""

    sent_at: str  # type: ignore[assignment]


class ShipmentSentV2AsText(ShipmentSentV1AsText, frozen=True, kw_only=True):
    """Version 2 with the send time as free text."""


class ShipmentSentV2NewStatus(Event, frozen=True, kw_only=True):
    """Version 2 whose status may say one thing more."""

    shipment_id: uuid.UUID
    status: Literal["sent", "lost", "returned"] = "sent"


class ShipmentSentV1Status(Event, frozen=True, kw_only=True):
    """Version 1 with a closed set of statuses."""

    shipment_id: uuid.UUID
    status: Literal["sent", "lost"] = "sent"


class StrictStop(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A stop that refuses fields it does not know."""

    place: str


class ShipmentSentStrict(Event, frozen=True, kw_only=True):
    """A payload one of whose structs refuses unknown fields."""

    shipment_id: uuid.UUID
    stops: list[StrictStop]


def registry_of(*entries: tuple[type[Event], str, int, str]) -> EventRegistry:
    registry = EventRegistry()
    for cls, event_type, version, aggregate in entries:
        registry.register(cls, event_type, version, aggregate)
    return registry


def catalogue_of(*entries: tuple[type[Event], str, int, str]) -> dict[str, Any]:
    return build_catalogue(registry_of(*entries))


def committed(catalogue: dict[str, Any]) -> dict[str, Any]:
    """Return the catalogue as it reads back from the committed file."""
    loaded: dict[str, Any] = json.loads(dump_catalogue(catalogue))
    return loaded


PAYMENT_V1 = (PaymentCapturedV1, "payment.captured", 1, "payment")
STOCK_V1 = (StockReservedV1, "inventory.stock_reserved", 1, "inventory")


# --- build_catalogue ----------------------------------------------------------------------------------


def test_catalogue_structure() -> None:
    catalogue = catalogue_of(PAYMENT_V1, STOCK_V1)

    assert list(catalogue["events"]) == ["inventory.stock_reserved", "payment.captured"]
    entry = catalogue["events"]["payment.captured"]
    assert entry["aggregate"] == "payment"
    assert list(entry["versions"]) == ["1"]
    schema = entry["versions"]["1"]
    assert schema["$ref"] == "#/$defs/PaymentCapturedV1"
    root = schema["$defs"]["PaymentCapturedV1"]
    assert list(root["properties"]) == ["payment_id", "amount", "currency"]  # declaration order
    assert root["required"] == ["payment_id", "amount"]
    assert root["properties"]["amount"] == {"format": "decimal", "type": "string"}
    # Nested structs are included, so each version's schema stands alone.
    assert "Item" in catalogue["events"]["inventory.stock_reserved"]["versions"]["1"]["$defs"]


def test_catalogue_is_deterministic_and_versions_are_numerically_ordered() -> None:
    def fresh(version: int) -> tuple[type[Event], str, int, str]:
        cls = type(f"Numbered{version}", (Event,), {"__annotations__": {"n": "int"}}, frozen=True)
        return cls, "counter.ticked", version, "counter"

    catalogue = catalogue_of(fresh(10), fresh(2), fresh(1))

    assert list(catalogue["events"]["counter.ticked"]["versions"]) == ["1", "2", "10"]
    assert dump_catalogue(catalogue) == dump_catalogue(committed(catalogue))
    assert dump_catalogue(catalogue).endswith("}\n")


def test_empty_catalogue() -> None:
    assert build_catalogue(EventRegistry()) == {"events": {}}
    assert check_compatibility({"events": {}}, {"events": {}}) == []


# --- check_compatibility ----------------------------------------------------------------------------


def test_unchanged_catalogue_has_no_problems() -> None:
    current = catalogue_of(PAYMENT_V1, STOCK_V1)

    assert check_compatibility(committed(current), current) == []


def test_documentation_only_changes_are_not_schema_changes() -> None:
    before = catalogue_of(PAYMENT_V1)
    after = catalogue_of((PaymentCapturedV1Edited, "payment.captured", 1, "payment"))

    assert before != after  # the title and description differ ...
    assert check_compatibility(committed(before), after) == []  # ... but not the wire format


def test_changed_schema_without_version_bump() -> None:
    before = catalogue_of(PAYMENT_V1)
    after = catalogue_of((PaymentCapturedV1Changed, "payment.captured", 1, "payment"))

    assert check_compatibility(committed(before), after) == ["payment.captured v1 changed without a version bump"]


def test_removed_version_is_a_problem() -> None:
    before = catalogue_of(PAYMENT_V1, STOCK_V1)
    after = catalogue_of(STOCK_V1)

    assert check_compatibility(committed(before), after) == [
        "payment.captured v1 was removed; published versions are permanent"
    ]


def test_added_optional_field_in_v2_is_fine() -> None:
    before = catalogue_of(PAYMENT_V1)
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2Optional, "payment.captured", 2, "payment"))

    assert check_compatibility(committed(before), after) == []


def test_dropping_an_optional_field_in_v2_is_fine() -> None:
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2DroppedOptional, "payment.captured", 2, "payment"))

    assert check_compatibility({"events": {}}, after) == []


def test_added_required_field_in_v2_is_a_problem() -> None:
    before = catalogue_of(PAYMENT_V1)
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2Required, "payment.captured", 2, "payment"))

    assert check_compatibility(committed(before), after) == [
        "payment.captured v2 is not backward compatible with v1: "
        "field 'provider_reference' was added as required; it needs a default"
    ]


def test_removed_required_field_is_a_problem() -> None:
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2Removed, "payment.captured", 2, "payment"))

    assert check_compatibility({"events": {}}, after) == [
        "payment.captured v2 is not backward compatible with v1: required field 'amount' was removed"
    ]


def test_changed_field_type_is_a_problem() -> None:
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2Retyped, "payment.captured", 2, "payment"))

    assert check_compatibility({"events": {}}, after) == [
        "payment.captured v2 is not backward compatible with v1: "
        "field 'amount' changed type from string(decimal) to number"
    ]


def test_narrowing_an_optional_field_is_a_problem() -> None:
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2Enum, "payment.captured", 2, "payment"))

    problems = check_compatibility({"events": {}}, after)

    assert problems == [
        "payment.captured v2 is not backward compatible with v1: "
        'field \'currency\' changed type from string to enum("EUR", "USD")'
    ]


def test_optional_field_becoming_required_is_a_problem() -> None:
    after = catalogue_of(PAYMENT_V1, (PaymentCapturedV2Stricter, "payment.captured", 2, "payment"))

    assert check_compatibility({"events": {}}, after) == [
        "payment.captured v2 is not backward compatible with v1: field 'currency' became required; it needs a default"
    ]


def test_removed_required_field_of_a_nested_struct_is_a_problem() -> None:
    after = catalogue_of(STOCK_V1, (StockReservedV2, "inventory.stock_reserved", 2, "inventory"))

    assert check_compatibility({"events": {}}, after) == [
        "inventory.stock_reserved v2 is not backward compatible with v1: required field 'items[].quantity' was removed"
    ]


def test_recursive_structs_are_handled() -> None:
    before = catalogue_of((CategoryDefinedV1, "catalog.category_defined", 1, "catalog"))
    after = catalogue_of(
        (CategoryDefinedV1, "catalog.category_defined", 1, "catalog"),
        (CategoryDefinedV2, "catalog.category_defined", 2, "catalog"),
    )

    assert check_compatibility(committed(before), after) == []
    assert "catalog.category_defined" in render_markdown(after)


def test_changed_aggregate_is_a_problem() -> None:
    before = catalogue_of(PAYMENT_V1)
    after = catalogue_of((PaymentCapturedV1, "payment.captured", 1, "payment"))
    after["events"]["payment.captured"]["aggregate"] = "billing"

    assert check_compatibility(committed(before), after) == [
        "payment.captured moved from aggregate 'payment' to 'billing'; published events keep their aggregate"
    ]


SHIPMENT_V1 = (ShipmentSentV1, "shipment.sent", 1, "shipment")


def test_datetimes_and_times_are_told_from_text_wherever_they_sit() -> None:
    # msgspec writes a datetime that may be naive as {"type": "string"}, a str's schema.
    schema = catalogue_of(SHIPMENT_V1)["events"]["shipment.sent"]["versions"]["1"]
    root, stop = schema["$defs"]["ShipmentSentV1"]["properties"], schema["$defs"]["Stop"]["properties"]

    assert root["sent_at"] == {"format": "datetime", "type": "string"}
    assert stop["reached_at"] == {"format": "datetime", "type": "string"}
    assert stop["place"] == {"type": "string"}
    assert root["eta"]["anyOf"] == [{"format": "datetime", "type": "string"}, {"type": "null"}]
    assert root["aware"]["anyOf"][0] == {"format": "date-time", "type": "string"}  # msgspec's own, kept
    assert root["naive"]["anyOf"][0] == {"format": "naive-datetime", "type": "string"}
    assert root["window"]["anyOf"][0]["prefixItems"] == [{"format": "time-of-day", "type": "string"}] * 2
    assert root["by_depot"]["additionalProperties"] == {"format": "datetime", "type": "string"}


def test_a_published_datetime_retyped_as_text_is_a_change_without_a_version_bump() -> None:
    before = catalogue_of(SHIPMENT_V1)
    after = catalogue_of((ShipmentSentV1AsText, "shipment.sent", 1, "shipment"))

    assert check_compatibility(committed(before), after) == ["shipment.sent v1 changed without a version bump"]


@pytest.mark.parametrize(
    ("v1", "v2", "change"),
    [
        (ShipmentSentV1, ShipmentSentV2AsText, "'sent_at' changed type from string(datetime) to string"),
        # A reader of v1 reads v2 with its v1 class: "returned" is not one of its values, so it would dead-letter it.
        (
            ShipmentSentV1Status,
            ShipmentSentV2NewStatus,
            '\'status\' changed type from enum("lost", "sent") to enum("lost", "returned", "sent")',
        ),
    ],
    ids=["datetime-as-text", "new-enum-value"],
)
def test_a_field_retyped_in_a_new_version_is_a_problem(v1: type[Event], v2: type[Event], change: str) -> None:
    after = catalogue_of((v1, "shipment.sent", 1, "shipment"), (v2, "shipment.sent", 2, "shipment"))

    assert check_compatibility({"events": {}}, after) == [
        f"shipment.sent v2 is not backward compatible with v1: field {change}"
    ]


def test_a_struct_that_refuses_unknown_fields_is_a_problem() -> None:
    # Its readers would dead-letter every later version that adds a field, which the rules allow.
    after = catalogue_of((ShipmentSentStrict, "shipment.sent", 1, "shipment"))

    assert check_compatibility({"events": {}}, after) == [
        "shipment.sent v1 refuses unknown fields (StrictStop: forbid_unknown_fields); "
        "its readers could not read a later version that adds one"
    ]


# --- render_markdown --------------------------------------------------------------------------------


def test_markdown_lists_every_event_version() -> None:
    catalogue = catalogue_of(
        PAYMENT_V1,
        (PaymentCapturedV2Optional, "payment.captured", 2, "payment"),
        STOCK_V1,
    )

    page = render_markdown(catalogue)

    assert "| `payment.captured` | 1 | `payment` |" in page
    assert "| `payment.captured` | 2 | `payment` |" in page
    assert "| `inventory.stock_reserved` | 1 | `inventory` |" in page
    assert "`amount`: `string(decimal)` **required**" in page
    assert '`currency`: `string`, default `"EUR"`' in page
    assert "`items`: `array<Item>` **required**" in page
    assert "*Item*: `sku`: `string` **required**, `quantity`: `integer` **required**" in page
    assert "## Versioning rules" in page
    assert page.endswith("\n")


def test_markdown_escapes_pipes_inside_table_cells() -> None:
    page = render_markdown(catalogue_of(STOCK_V1))

    row = next(line for line in page.splitlines() if line.startswith("| `inventory.stock_reserved`"))
    assert "`note`: `string \\| null`" in row
    assert row.count(" | ") == 8  # only the column separators (nine columns) are unescaped


def test_markdown_shows_each_versions_docstring_as_its_meaning() -> None:
    """A v2 that changes what a field carries (not its type) differs from v1 only in its docstring."""
    page = render_markdown(catalogue_of(PAYMENT_V1, STOCK_V1))

    row = next(line for line in page.splitlines() if line.startswith("| `inventory.stock_reserved`"))
    assert row.split(" | ")[7] == "Stock was reserved."
    assert "| Event | Schema version | Aggregate | Topic | Key | Producer | Consumers | Meaning | Fields |" in page


class PaymentCapturedSealed(Event, frozen=True, kw_only=True):
    """v2: the same fields, with ``payment_id`` sealed | opened by
    the buyer's data key.

    Second paragraph."""

    payment_id: str
    amount: decimal.Decimal


def test_a_docstring_becomes_one_cell_code_spans_and_paragraphs_kept() -> None:
    page = render_markdown(catalogue_of((PaymentCapturedSealed, "payment.captured", 2, "payment")))

    row = next(line for line in page.splitlines() if line.startswith("| `payment.captured` | 2"))
    assert (
        "v2: the same fields, with `payment_id` sealed \\| opened by the buyer's data key.<br>Second paragraph." in row
    )


# --- discover_event_modules -------------------------------------------------------------------------


@pytest.fixture
def fake_apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = "outbox_catalogue_test_apps"
    root = tmp_path / package
    for service, has_events in [("billing", True), ("orders", True), ("gateway", False)]:
        (root / service).mkdir(parents=True)
        (root / service / "__init__.py").write_text("")
        if has_events:
            (root / service / "events.py").write_text("LOADED = True\n")
    (root / "__init__.py").write_text("")
    (root / "helpers.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [name for name in sys.modules if name.startswith(package)]:
        del sys.modules[name]


def test_discover_imports_each_services_events_module(fake_apps: str) -> None:
    imported = discover_event_modules(fake_apps)

    assert imported == [f"{fake_apps}.billing.events", f"{fake_apps}.orders.events"]
    assert all(sys.modules[name].LOADED for name in imported)


def test_discover_without_the_package_finds_nothing() -> None:
    assert discover_event_modules("no_such_package_for_outbox_tests") == []


def test_discover_on_the_real_apps_package_does_not_fail() -> None:
    assert isinstance(discover_event_modules(), list)


# --- producers and consumers (outbox.catalogue.contracts) -------------------------------------------


def test_a_producer_is_a_service_whose_code_builds_the_newest_class(fake_apps: str, tmp_path: Path) -> None:
    root = tmp_path / fake_apps
    (root / "billing" / "services.py").write_text(
        "async def pay(s, e):\n    await add_event(s, e.id, PaymentCapturedV1(**e))\n"
    )
    (root / "billing" / "rows").mkdir()
    (root / "billing" / "rows" / "load.py").write_text("x = from_row(StockReservedV1, row)\n")
    # Read, not built: an annotation, an isinstance, the events module itself, a migration.
    (root / "orders" / "consumers.py").write_text(
        "def on(e: PaymentCapturedV1) -> bool:\n    return isinstance(e, PaymentCapturedV1)\n"
    )
    (root / "orders" / "events.py").write_text("PaymentCapturedV1(payment_id=1)\n")
    (root / "orders" / "migrations").mkdir()
    (root / "orders" / "migrations" / "0001.py").write_text("StockReservedV1(reservation_id=1)\n")

    found = contracts.producers(registry_of(PAYMENT_V1, STOCK_V1), fake_apps)

    assert found == {"payment.captured": ["billing"], "inventory.stock_reserved": ["billing"]}


def test_only_the_newest_class_makes_a_producer(fake_apps: str, tmp_path: Path) -> None:
    (tmp_path / fake_apps / "orders" / "services.py").write_text("PaymentCapturedV1(payment_id=1)\n")
    registry = registry_of(PAYMENT_V1, (PaymentCapturedV2Optional, "payment.captured", 2, "payment"))

    assert contracts.producers(registry, fake_apps) == {"payment.captured": []}


def test_the_catalogue_names_each_types_key_producers_and_consumers() -> None:
    catalogue = build_catalogue(
        registry_of(PAYMENT_V1, STOCK_V1),
        producers={"payment.captured": ["billing"]},
        consumers={"payment.captured": ["ledger", "orders"]},
    )

    payment, stock = catalogue["events"]["payment.captured"], catalogue["events"]["inventory.stock_reserved"]
    assert list(payment) == ["aggregate", "topic", "key", "producers", "consumers", "versions"]
    assert (payment["key"], payment["producers"], payment["consumers"]) == (
        "payment_id",
        ["billing"],
        ["ledger", "orders"],
    )
    assert (stock["key"], stock["producers"], stock["consumers"]) == (None, [], [])  # no inventory_id, no id
    row = next(line for line in render_markdown(catalogue).splitlines() if line.startswith("| `payment.captured`"))
    assert row.startswith(
        "| `payment.captured` | 1 | `payment` | `commerce.payment` | `payment_id` | `billing` | `ledger`, `orders` |"
    )
    assert "producers" not in build_catalogue(registry_of(PAYMENT_V1))["events"]["payment.captured"]


def test_a_moved_key_is_a_problem() -> None:
    before = catalogue_of(PAYMENT_V1)
    after = catalogue_of(PAYMENT_V1)
    after["events"]["payment.captured"]["key"] = "order_id"

    assert check_compatibility(committed(before), after) == [
        "payment.captured moved its key from field 'payment_id' to 'order_id'; "
        "published events keep their key (it decides the partition, so the order)"
    ]


# --- CLI --------------------------------------------------------------------------------------------


# The library has no paths of its own: the project names them ([tool.outbox]) or the CLI gets them.
CATALOGUE_JSON = Path("docs/events/catalogue.json")
CATALOGUE_MD = Path("docs/events/README.md")


def run(root: Path, *args: str, registry: EventRegistry) -> int:
    paths = ["--json", str(CATALOGUE_JSON), "--markdown", str(CATALOGUE_MD)]
    return main([*args, "--root", str(root), *paths], registry=registry)


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = registry_of(PAYMENT_V1, STOCK_V1)

    assert run(tmp_path, "write", registry=registry) == 0
    assert run(tmp_path, "check", registry=registry) == 0

    text = (tmp_path / CATALOGUE_JSON).read_text()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert "payment.captured" in (tmp_path / CATALOGUE_MD).read_text()
    assert "up to date" in capsys.readouterr().out


def test_check_reports_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "check", registry=registry_of(PAYMENT_V1)) == 1

    err = capsys.readouterr().err
    assert "docs/events/catalogue.json is missing" in err
    assert "docs/events/README.md is missing" in err


def test_check_reports_a_stale_readme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = registry_of(PAYMENT_V1)
    run(tmp_path, "write", registry=registry)
    (tmp_path / CATALOGUE_MD).write_text("# hand edited\n")
    capsys.readouterr()

    assert run(tmp_path, "check", registry=registry) == 1

    assert capsys.readouterr().err == ("docs/events/README.md is out of date; run `python -m outbox.catalogue write`\n")


def test_check_reports_new_versions_and_rule_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, "write", registry=registry_of(PAYMENT_V1))
    capsys.readouterr()

    status = run(
        tmp_path,
        "check",
        registry=registry_of((PaymentCapturedV1Changed, "payment.captured", 1, "payment")),
    )

    assert status == 1
    err = capsys.readouterr().err.splitlines()
    assert "payment.captured v1 changed without a version bump" in err
    assert any("catalogue.json is out of date" in line for line in err)


def test_write_refuses_to_rewrite_a_published_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, "write", registry=registry_of(PAYMENT_V1))
    before = (tmp_path / CATALOGUE_JSON).read_text()
    changed = registry_of((PaymentCapturedV1Changed, "payment.captured", 1, "payment"))

    assert run(tmp_path, "write", registry=changed) == 1
    assert "changed without a version bump" in capsys.readouterr().err
    assert (tmp_path / CATALOGUE_JSON).read_text() == before

    assert run(tmp_path, "write", "--force", registry=changed) == 0
    assert (tmp_path / CATALOGUE_JSON).read_text() != before


def test_check_reports_invalid_committed_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = registry_of(PAYMENT_V1)
    run(tmp_path, "write", registry=registry)
    (tmp_path / CATALOGUE_JSON).write_text("{oops")
    capsys.readouterr()

    assert run(tmp_path, "check", registry=registry) == 1
    assert "catalogue.json is not valid JSON" in capsys.readouterr().err


def test_tests_never_touch_the_default_registry() -> None:
    assert not any(cls.__module__ == __name__ for _, _, cls in default_registry)


def test_catalogue_paths_come_from_the_projects_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from outbox import config

    (tmp_path / "pyproject.toml").write_text(
        '[tool.outbox]\npackages = []\ncatalogue_json = "events/schemas.json"\ncatalogue_markdown = "events/index.md"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUTBOX_CONFIG", raising=False)
    config.settings.cache_clear()
    try:
        assert main(["write"], registry=registry_of(PAYMENT_V1)) == 0
    finally:
        config.settings.cache_clear()
    assert "payment.captured" in (tmp_path / "events" / "schemas.json").read_text()
    assert (tmp_path / "events" / "index.md").read_text().startswith("# Event catalogue")


def test_without_paths_the_cli_says_where_to_set_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from outbox import config

    monkeypatch.chdir(tmp_path)  # no pyproject.toml with [tool.outbox] above a pytest tmp folder
    monkeypatch.delenv("OUTBOX_CONFIG", raising=False)
    config.settings.cache_clear()
    try:
        with pytest.raises(SystemExit):
            main(["check"], registry=registry_of(PAYMENT_V1))
    finally:
        config.settings.cache_clear()
    assert "[tool.outbox] catalogue_json" in capsys.readouterr().err
