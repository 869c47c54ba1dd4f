"""bench/pgbench.py: pgbench's command line and figures, and the scripts' variables under -M prepared."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from apps.common.topology import BY_NAME
from apps.customer import consumers as customer_consumers
from apps.order.events import OrderCreated
from apps.order.known import PLACE_IF_KNOWN
from bench import consumer, orders
from bench.pgbench import (
    _LITERAL_OR_COMMENT,
    defined,
    gset_names,
    pgbench_argv,
    pgbench_result,
    progress_rates,
    quoted_variables,
    script_variables,
)

BENCH = Path(orders.__file__).resolve().parent

PGBENCH_OUT = """transaction type: bench/order_tx.sql
query mode: prepared
number of clients: 8
number of transactions actually processed: 9123
number of failed transactions: 0 (0.000%)
latency average = 17.536 ms
initial connection time = 21.005 ms
tps = 456.194127 (without initial connection time)
"""


def test_a_quoted_variable_is_found_and_comments_casts_and_plain_literals_are_not() -> None:
    sql = (
        "-- a comment naming ':oid' is no statement\n"
        "SELECT ':cid', 'customer:' || :cid, '{\"total\": \"30.00\"}'::jsonb, CAST(:oid AS uuid),\n"
        "       'it''s :tag' WHERE x = ':logid'::uuid"
    )
    assert quoted_variables(sql) == ["cid", "tag", "logid"]


@pytest.mark.parametrize("script", ["order_tx.sql", "consumer_tx.sql"])
def test_the_scripts_send_every_variable_as_a_parameter(script: str) -> None:
    assert quoted_variables((BENCH / script).read_text()) == []


def test_the_order_ceiling_runs_prepared_as_the_service_sends() -> None:
    argv = pgbench_argv(
        BY_NAME["order"], BENCH / "order_tx.sql", seconds=20, clients=orders.PGBENCH_CLIENTS, mode=orders.PGBENCH_MODE
    )
    assert argv[argv.index("-M") + 1] == "prepared"
    assert argv[argv.index("-c") + 1] == str(orders.PGBENCH_CLIENTS)
    assert argv[-1] == BY_NAME["order"].database  # pgbench's -d is --debug: the database goes last
    assert "-d" not in argv


def test_options_go_before_the_database_and_threads_never_exceed_clients() -> None:
    argv = pgbench_argv(
        BY_NAME["customer"],
        BENCH / "consumer_tx.sql",
        seconds=15,
        clients=1,
        mode=consumer.CEILING_MODE,
        options=["-D", "batch=1000"],
    )
    assert argv[-3:] == ["-D", "batch=1000", BY_NAME["customer"].database]
    assert argv[argv.index("-j") + 1] == "1"


def test_result_and_progress_are_read_from_pgbench_output() -> None:
    assert pgbench_result(PGBENCH_OUT) == (456.194127, 9123)
    assert progress_rates(
        "progress: 5.0 s, 401.2 tps, lat 19.9 ms stddev 7.1, 0 failed\n"
        "progress: 10.0 s, 455.0 tps, lat 17.5 ms stddev 6.0, 0 failed\n"
    ) == [401.2, 455.0]


def test_no_tps_is_an_error_naming_the_output() -> None:
    with pytest.raises(SystemExit, match="printed no tps"):
        pgbench_result("connection to server failed")


def test_the_consumer_script_reads_only_the_variables_the_ceiling_sets() -> None:
    sql = (BENCH / "consumer_tx.sql").read_text()
    assert script_variables(sql) == defined(consumer.ceiling_variables(1000, 2000, "r1"))


def test_variables_read_set_by_gset_and_by_options() -> None:
    sql = (
        "-- :not_read in a comment\n"
        "SELECT gen_random_uuid() AS oid, md5(random()::text) AS tag \\gset\n"
        "SELECT CAST(:oid AS uuid), 'PGB-' || :tag, ':quoted', '{}'::jsonb, CAST(:pids AS uuid[]);\n"
    )
    assert script_variables(sql) == {"oid", "tag", "pids"}
    assert gset_names(sql) == {"oid", "tag"}
    assert defined(["-c", "8", "-D", "pids={a,b}", "-D", "x=1=2"]) == {"pids", "x"}


PRODUCTS = [
    orders.BenchProduct(
        "01a21769-8397-7144-97cb-4ad5fde5824f", "T-A", "Test product", Decimal("10.00"), "USD", "2026-11-27 04:36:54+00"
    ),
    orders.BenchProduct(
        "01a216da-03ab-77f0-a9f1-04f4c65fd107", "T-B", 'A "quoted" name', Decimal("4.50"), "USD", "2026-11-27 04:36:50"
    ),
]


def test_the_order_script_reads_only_what_its_gset_and_the_bench_set() -> None:
    sql = (BENCH / "order_tx.sql").read_text()
    options = orders.order_tx_variables(PRODUCTS)
    assert script_variables(sql) == gset_names(sql) | defined(options)
    assert options[::2] == ["-D"] * (len(options) // 2)
    values = dict(option.split("=", 1) for option in options[1::2])
    assert values["pids"] == "{" + '"01a21769-8397-7144-97cb-4ad5fde5824f","01a216da-03ab-77f0-a9f1-04f4c65fd107"' + "}"
    assert values["names"] == '{"Test product","A \\"quoted\\" name"}'
    assert values["unit_prices"] == '{"10.00","4.50"}' and values["total_prices"] == '{"10.00","9.00"}'
    assert values["quantities"] == '{"1","2"}'
    assert values["fresh_since"] == "2026-11-27 04:36:50"  # the older row: both pass the freshness test
    # The outbox payload is an order.created of those lines, as the service encodes one (not a stub).
    payload = msgspec.json.decode(values["event_data"], type=OrderCreated)
    assert [(str(line.product_id), line.quantity, line.total_price) for line in payload.items] == [
        ("01a21769-8397-7144-97cb-4ad5fde5824f", 1, Decimal("10.00")),
        ("01a216da-03ab-77f0-a9f1-04f4c65fd107", 2, Decimal("9.00")),
    ]
    assert payload.total_amount == Decimal("19.00") and payload.currency == "USD"


def test_the_order_script_sends_the_services_one_statement() -> None:
    """bench/order_tx.sql's write is the service's PLACE_IF_KNOWN (apps/order/known.py): the same CTEs in the
    same order, writing the same tables, and the same answer; only its values differ (literals, names)."""
    script = _LITERAL_OR_COMMENT.sub(" ", (BENCH / "order_tx.sql").read_text()).split("\\gset", 1)[1]
    service = str(PLACE_IF_KNOWN.statement)
    assert script.count(";") == 1  # one statement after the ids' \gset
    # Locks taken for the erasure's sake (apps/order/erasure.py): an advisory key, a row lock (a WAL record).
    locks = r"\b(pg_\w*advisory\w*\(|FOR (?:NO KEY |KEY )?(?:SHARE|UPDATE)\b)"
    for pattern in (r"\b(\w+) AS \(", r"INSERT INTO (\w+)", r"\b(?:FROM|JOIN) (order_known_\w+)", locks):
        assert re.findall(pattern, script) == re.findall(pattern, service), pattern
    # Each insert names the same columns in the same order (a column the service added, the script too).
    columns = r"INSERT INTO \w+(?: AS \w+)? \(([^)]*)\)"
    assert [c.split() for c in re.findall(columns, script)] == [c.split() for c in re.findall(columns, service)]
    # The same answer: the lookup's rows and the items' ids.
    assert " ".join(script.rstrip(" ;\n").split()[-10:]) == " ".join(service.split()[-10:])


def _part(pattern: str, sql: str) -> str:
    found = re.search(pattern, " ".join(sql.split()))
    assert found is not None, (pattern, sql)
    return found.group(1)


def test_the_consumer_script_sends_the_handlers_upsert() -> None:
    """bench/consumer_tx.sql's customer-stats write is the handler's _APPLY (apps/customer/consumers.py): the same
    columns inserted, the same conflict target and the same updates; only where the rows come from differs
    (the script draws its customers, the handler unnests its fold)."""
    script = (BENCH / "consumer_tx.sql").read_text().split("INSERT INTO customer_stats", 1)[1].split(";", 1)[0]
    handler = str(customer_consumers._APPLY).split("INSERT INTO customer_stats", 1)[1]
    for pattern in (r"^AS s \(([^)]*)\)", r"(ON CONFLICT .*)$"):
        assert _part(pattern, script) == _part(pattern, handler), pattern
