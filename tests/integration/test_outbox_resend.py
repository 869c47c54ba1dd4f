"""The outbox re-send of `just pitr` and `just promote` (infra/resync.py) on PostgreSQL: in chunks, each a
transaction of its own, one after the other, with every aggregate's rows in event_version order, and nothing
lost or changed. A scratch database of its own on the dev cluster (no connector reads it)."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator

from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import CreateTable

from infra import postgres, resync
from outbox.models import OUTBOX_TABLE, OutboxEventMixin


class _Base(DeclarativeBase):
    pass


class _EventStore(OutboxEventMixin, _Base):
    pass


START = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)
AGGREGATES = 50
ROWS = 1000
CHUNK = 7


@contextlib.contextmanager
def _scratch_outbox() -> Iterator[str]:
    name = f"outbox_resend_{uuid.uuid4().hex[:10]}"
    postgres.psql_admin(f"CREATE DATABASE {name}")
    try:
        postgres.psql_admin(
            [
                str(CreateTable(_EventStore.__table__).compile(dialect=postgresql.dialect())),  # type: ignore[no-untyped-call,arg-type]
                f"CREATE UNIQUE INDEX ON {OUTBOX_TABLE} (aggregate_id, event_version)",
                f"CREATE INDEX ON {OUTBOX_TABLE} USING brin (created_at)",
            ],
            database=name,
        )
        yield name
    finally:
        postgres.psql_admin(f"DROP DATABASE {name} WITH (FORCE)")


def _aggregate(number: int) -> str:
    return f"00000000-0000-0000-0000-{number:012d}"


def test_rows_are_resent_in_chunks_with_each_aggregates_versions_in_order() -> None:
    with _scratch_outbox() as database:

        def sql(statement: str) -> str:
            return postgres.psql_admin(statement, database=database).strip()

        # ROWS events over AGGREGATES aggregates, a millisecond apart. Aggregate 1's version 10 carries a
        # created_at before its version 9's: its writer started first, then waited for the version row's lock
        # (created_at is the transaction's start), so time order alone would publish 10 before 9.
        sql(
            f"INSERT INTO {OUTBOX_TABLE} (id, aggregate_id, aggregate_type, event_type, event_data, event_version, "
            "schema_version, min_reader_version, created_at) "
            f"SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad((g % {AGGREGATES})::text, 12, '0'))::uuid, "
            f"'order', 'order.placed', '{{}}', g / {AGGREGATES} + 1, 1, 1, "
            f"'{START.isoformat()}'::timestamptz + g * interval '1 ms' FROM generate_series(0, {ROWS} - 1) AS g"
        )
        sql(
            f"UPDATE {OUTBOX_TABLE} SET created_at = created_at - interval '60 ms' "
            f"WHERE aggregate_id = '{_aggregate(1)}' AND event_version = 10"
        )
        since = START + dt.timedelta(milliseconds=100)  # the first 100 rows are older: left alone
        everything = f"SELECT md5(string_agg(e::text, ',' ORDER BY id)) FROM {OUTBOX_TABLE} AS e"
        before, older = (
            sql(everything),
            sql(f"SELECT string_agg(xmin::text, ',') FROM {OUTBOX_TABLE} WHERE created_at < '{since.isoformat()}'"),
        )
        due = int(sql(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE created_at >= '{since.isoformat()}'"))
        assert due == ROWS - 100

        said: list[str] = []
        assert resync.resend_outbox({database: since}, said.append, chunk=CHUNK) == due
        assert said == [f"{database}: {due} outbox rows since {since.isoformat()} published again"]

        assert sql(everything) == before  # the same rows, every column
        assert (
            sql(f"SELECT string_agg(xmin::text, ',') FROM {OUTBOX_TABLE} WHERE created_at < '{since.isoformat()}'")
            == older
        )
        # As Debezium reads them: by transaction (xmin; the chunks commit one after the other), then as
        # inserted (a fresh heap's new tuples go to its end).
        resent = [
            line.split("|")
            for line in sql(
                f"SELECT xmin, aggregate_id, event_version FROM {OUTBOX_TABLE} "
                f"WHERE created_at >= '{since.isoformat()}' ORDER BY xmin::text::bigint, ctid"
            ).splitlines()
        ]
        assert len(resent) == due
        transactions = [xmin for xmin, _, _ in resent]
        assert len(set(transactions)) == -(-due // CHUNK)  # a transaction per chunk of CHUNK rows
        assert all(transactions.count(xmin) <= CHUNK for xmin in set(transactions))
        versions: dict[str, list[int]] = {}
        for _, aggregate, version in resent:
            versions.setdefault(aggregate, []).append(int(version))
        assert all(seen == sorted(seen) for seen in versions.values()), versions
        assert versions[_aggregate(1)][:3] == [3, 4, 5] and 9 in versions[_aggregate(1)]
