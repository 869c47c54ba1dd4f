"""Alembic operations that create the outbox and inbox tables in a service's own migration.

Published migrations call these by name; a later schema change gets a new function (``..._v2``) so
that an old migration keeps meaning what it meant when it ran.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from outbox.models import HEARTBEAT_TABLE, INBOX_TABLE, OUTBOX_TABLE, VERSION_TABLE

RETENTION_COMMENT = "Outbox and audit log: kept one year, deleted by the retention job (never published)."


def create_outbox_v1(*, publication: str, cdc_role: str = "debezium") -> None:
    """event_store + per-aggregate versions + heartbeat table, and an insert-only publication."""
    op.create_table(
        OUTBOX_TABLE,
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("aggregate_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("event_data", pg.JSONB, nullable=False),
        sa.Column("event_version", sa.Integer, nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        comment=RETENTION_COMMENT,
    )
    # The seed's idx_event_store_aggregate, made unique: two events can never share a version.
    op.create_index("idx_event_store_aggregate", OUTBOX_TABLE, ["aggregate_id", "event_version"], unique=True)
    op.create_index("idx_event_store_created", OUTBOX_TABLE, ["created_at"])
    op.create_table(
        VERSION_TABLE,
        sa.Column("aggregate_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        HEARTBEAT_TABLE,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # Inserts only: the retention job's deletes never reach Kafka.
    op.execute(
        f"CREATE PUBLICATION {publication} FOR TABLE {OUTBOX_TABLE}, {HEARTBEAT_TABLE} WITH (publish = 'insert')"
    )
    grant_cdc_read(cdc_role)


def grant_cdc_read(cdc_role: str) -> None:
    """Let the CDC role read the outbox and write heartbeats, if that role exists in this cluster."""
    op.execute(
        "DO $$BEGIN "
        f"IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{cdc_role}') THEN "
        f"GRANT SELECT ON {OUTBOX_TABLE} TO {cdc_role}; "
        f"GRANT SELECT, INSERT, DELETE ON {HEARTBEAT_TABLE} TO {cdc_role}; "
        "END IF; END$$"
    )


def event_store_created_brin() -> None:
    """event_store's created_at as a BRIN index (idx_event_store_created_brin) instead of the btree
    idx_event_store_created (issue 11).

    Rows are only ever appended (time-ordered) and deleted from the old end, so a block range's
    created_at summary stays tight, and a new row lands in a range not yet summarised: its insert writes
    nothing to the index. The readers are range conditions (the retention job's ``created_at < cutoff``,
    PITR's ``created_at >= since``), which a BRIN index serves. The btree took an entry per event, a WAL
    record every walsender and the replica read. The new index is built before the old one goes."""
    with op.get_context().autocommit_block():
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_event_store_created_brin ON {OUTBOX_TABLE} "
            "USING brin (created_at)"
        )
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_event_store_created")


def event_store_created_btree() -> None:
    """event_store_created_brin's downgrade: the btree of create_outbox_v1 again."""
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_event_store_created ON {OUTBOX_TABLE} (created_at)")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS idx_event_store_created_brin")


def event_store_payload_statistics_off() -> None:
    """No planner statistics for event_store.event_data (issue 11).

    ANALYZE sampled up to 30,000 payloads per run, detoasting and sorting jsonb documents, for statistics
    no query uses: nothing compares the whole payload, and a filter on one of its keys (the warehouse's
    ``event_data ->> 'return_id'``) is an expression the column's statistics do not estimate. In a 2.4M-row
    order_db outbox a manual ANALYZE took 0.39-0.43 s of CPU with them and 0.21-0.23 without. The other
    columns keep theirs (the retention job's and PITR's created_at ranges are planned from them). A
    catalogue change only: SHARE UPDATE EXCLUSIVE for an instant, inserts go on."""
    op.execute(f"ALTER TABLE {OUTBOX_TABLE} ALTER COLUMN event_data SET STATISTICS 0")


def event_store_payload_statistics_default() -> None:
    """event_store_payload_statistics_off's downgrade: the column samples default_statistics_target again."""
    op.execute(f"ALTER TABLE {OUTBOX_TABLE} ALTER COLUMN event_data SET STATISTICS -1")


def analyze_scale_factor(tables: Sequence[str], factor: float | None) -> None:
    """Autovacuum analyzes each of ``tables`` after ``factor`` of its rows changed (None: the cluster's
    autovacuum_analyze_scale_factor, 0.1, again).

    For append-mostly tables read by key (issue 11): ANALYZE samples up to 30,000 rows whatever the
    table's size, 0.15-1.1 s of CPU per run here, and at 0.1 a table of a million rows was analyzed every
    100,000 changes: autovacuum's ANALYZE of the order path came to ~0.1 ms per order. Their statistics
    barely move as they grow (row counts are scaled by the table's current size at planning time, a key
    lookup's plan does not depend on them), so a run after half again as many rows gives the same plans
    for a fifth of the runs. A storage parameter: SHARE UPDATE EXCLUSIVE for an instant, no rewrite."""
    for table in tables:
        if factor is None:
            op.execute(f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor)")
        else:
            op.execute(f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = {factor})")


def event_store_min_reader_version() -> None:
    """event_store.min_reader_version: the oldest version of the event type a consumer must know to read the
    row (outbox.events.EventRegistry.register); the connector's EventRouter sends it as the record's
    ``min_reader_version`` header. smallint NOT NULL DEFAULT 1 (1: any reader): a constant default is a
    catalogue change on PostgreSQL 11+ (no rewrite; the rows before it read 1), and a row written by code that
    does not name the column (a service not yet restarted) gets 1, what it meant. A NULL instead would give
    every row a null bitmap: 8 bytes more per heap insert's WAL record against 2 (pg_waldump, 2,000 inserts
    each, docs/decisions.md "Readers older than a version")."""
    op.add_column(OUTBOX_TABLE, sa.Column("min_reader_version", sa.SmallInteger, nullable=False, server_default="1"))


def event_store_min_reader_version_drop() -> None:
    """event_store_min_reader_version's downgrade (the connectors' EventRouter must not name it first)."""
    op.drop_column(OUTBOX_TABLE, "min_reader_version")


def event_store_correlation_id() -> None:
    """event_store.correlation_id: the id of the request (X-Request-ID, outbox/correlation.py) whose work wrote
    the row, or of the event whose handling did; the connector's EventRouter sends it as the record's
    ``correlation_id`` header. A nullable uuid: NULL where no request or event started the work (a sweeper,
    a job) and on rows written before it, with no default to backfill (a catalogue change). uuid, not text:
    16 bytes per heap insert's WAL record where the id as text costs 37, and NULL 8 (the null bitmap;
    pg_waldump, 2,000 inserts x 2 rounds, docs/decisions.md "One id for one order's story")."""
    op.add_column(OUTBOX_TABLE, sa.Column("correlation_id", pg.UUID(as_uuid=True), nullable=True))


def event_store_correlation_id_drop() -> None:
    """event_store_correlation_id's downgrade (the connectors' EventRouter must not name it first)."""
    op.drop_column(OUTBOX_TABLE, "correlation_id")


def drop_outbox_v1(*, publication: str) -> None:
    op.execute(f"DROP PUBLICATION IF EXISTS {publication}")
    op.drop_table(HEARTBEAT_TABLE)
    op.drop_table(VERSION_TABLE)
    op.drop_table(OUTBOX_TABLE)


def create_inbox_v1() -> None:
    """The consumer inbox: one row per (group, event id), inserted before the handler runs."""
    op.create_table(
        INBOX_TABLE,
        sa.Column("consumer_group", sa.String(200), primary_key=True),
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("aggregate_id", pg.UUID(as_uuid=True)),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("event_version", sa.Integer),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("kafka_offset", sa.BigInteger, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("idx_inbox_aggregate", INBOX_TABLE, ["consumer_group", "aggregate_id", "event_version"])


def drop_inbox_v1() -> None:
    op.drop_table(INBOX_TABLE)


def fill_in_batches(fill: str, left: str) -> None:
    """Run ``fill`` (an UPDATE of one batch, ``FOR UPDATE SKIP LOCKED``, RETURNING a row per row changed) until
    ``left`` (a SELECT) finds no row to fill; each statement its own transaction inside an autocommit block, so
    no lock outlives a batch. A batch that finds only rows held by others waits for them to commit. Offline,
    the statement is written once."""
    if context.is_offline_mode():
        op.execute(f"-- batch after batch, until none is left\n{fill}")
        return
    bind = op.get_bind()
    while True:
        if bind.execute(sa.text(fill)).first() is not None:
            continue
        if bind.execute(sa.text(left)).first() is None:
            return
        time.sleep(0.05)
