# commerce-outbox: `just up` runs everything, `just test` tests it. `just --list` shows the rest.
set positional-arguments

python := "uv run --frozen python"

# List the recipes
default:
    @just --list

# Install what is missing (apt packages, the locked Python env); `up` and `test` run it first
bootstrap:
    @infra/bootstrap.sh

# Start the whole stack, every service and consumer, deploy the connectors, print the URLs
up: bootstrap
    {{python}} -m infra.stack up

# Stop everything the stack started
down:
    {{python}} -m infra.stack down

# One component at a time: `just stop order-api`, `just start connect`, `just restart customer-consumer`
stop component:
    {{python}} -m infra.stack stop "$@"

# Start one component that is down (any name `just status` lists)
start component:
    {{python}} -m infra.stack start "$@"

# Stop and start one component (a service or consumer then runs the code on disk)
restart component:
    {{python}} -m infra.stack restart "$@"

# Each component up or DOWN; exits non-zero if any is down
status:
    {{python}} -m infra.stack status

# Show logs: `just logs` (all), `just logs connect`, `just logs kafka -f`
logs *args:
    {{python}} -m infra.stack logs "$@"

# Run the test suite (starts the stack once if it is not running); extra args reach pytest
test *args: bootstrap
    uv run --frozen pytest "$@"

# ruff (lint and format check) and mypy
lint:
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .
    uv run --frozen mypy --explicit-package-bases apps outbox infra bench tests

# psql on a service's database as its own role: `just psql order -c "select 1"`
psql service *args:
    @{{python}} -m infra.psql "$@"

# Create or update every connector in connectors/ and wait until each task is RUNNING
connectors-deploy *args:
    {{python}} -m infra.connectors "$@"

# Apply every service's migrations (or name services: `just migrate order customer`)
migrate *args:
    {{python}} -m infra.migrate "$@"

# Reset a consumer group's offsets: `just replay customer-stats --to-earliest [--rebuild] [--restart] [--dry-run]`
replay group *args:
    {{python}} -m infra.replay "$@"

# Dead letters: `just dlq list customer-stats [--pending]`, `just dlq redrive customer-stats [--event-id ID]`, `just dlq ack customer-stats`
dlq *args:
    @{{python}} -m outbox.dlq "$@"

# Refunds the provider never answered (docs/operations.md): `just refunds pending [--older-than S]`, `just refunds fail ID --by NAME --reason TEXT`
refunds *args:
    @{{python}} -m apps.payment.admin "$@"

# Kafka's own consumer-group tool (kafka-consumer-groups.sh), e.g. `just kafka-consumer-groups --list`
kafka-consumer-groups *args:
    @{{python}} -m infra.kafka_tools consumer-groups "$@"

# Saga soak (not in `just test`): SECONDS of orders and checkouts while Kafka, Connect, PostgreSQL and the saga's processes are SIGKILLed on a schedule drawn from SEED, then every order must add up: `just soak 300 42`
soak *args:
    {{python}} -m tests.soak.saga "$@"

# Returns soak (not in `just test`): SECONDS of returns asked, approved, received and refunded while the payment worker and consumer, the returns consumer and sweeper, the provider sandbox and PostgreSQL are SIGKILLed on a schedule drawn from SEED, then refunds, ledger and stock must add up: `just soak-returns 150 4401`
soak-returns *args:
    {{python}} -m tests.soak.returns "$@"

# Events applied per second by the consumer runtime next to a bare confluent-kafka consumer
bench-consumer *args: bootstrap
    {{python}} -m bench.consumer "$@"

# Orders per second through POST /api/orders (wrk) next to pgbench's ceiling, and end-to-end delay
bench *args: up
    {{python}} -m bench.orders "$@"

# Delete outbox rows older than a year and inbox rows past the replay window, in every service database; then checkout's cart and session lifecycle
retention *args:
    {{python}} -m infra.retention "$@"

# The scheduled jobs once, now (retention, checkout lifecycle, order archival, idempotency keys, access-log retention, backups): `just jobs run [JOB ...]`; `just up` runs them hourly
jobs *args:
    {{python}} -m infra.jobs "$@"

# A service's encryption keys: `just keys [SERVICE] status|rotate|reseal|retire KID` (customer, order, checkout; default customer; rotate re-encrypts in batches)
keys *args:
    {{python}} -m apps.common.sealed_tables "$@"

# A bearer token from the local issuer: `just token ROLE [--customer ID] [--service NAME] [--scope S] [--ttl S]`
token *args:
    @{{python}} -m infra.tokens "$@"

# Dumps per service (`just backup [SERVICE...]` -> backups/), or pgBackRest: `just backup --full|--incr|--info`
backup *args:
    {{python}} -m infra.backup "$@"

# Restore one service's database from a dump: `just restore order backups/20261126_031500_order_db.backup`
restore service file:
    {{python}} -m infra.backup --restore "$@"

# Restore the cluster to a moment and re-sync the outbox (docs/operations.md): `just pitr --to "2026-11-26 03:15:00+00"`
pitr *args:
    {{python}} -m infra.pitr "$@"

# The seed's backup schedule as a cron file: `just backup-schedule > /etc/cron.d/commerce-outbox-backup`
backup-schedule:
    @{{python}} -m infra.backup --schedule

# The read replica becomes the primary when the primary is lost for good, with WAL archiving, a first backup and the outbox re-synced (each connector a new slot, what it had not read published again; docs/operations.md, Read replica): `just promote` says whether it may, `just promote --yes` does it, `just promote --resync` finishes a re-sync cut short
promote *args:
    {{python}} -m infra.promote "$@"

# After `just promote`: the old primary's data directory made a replica of the new primary (it is deleted first): `just rebuild-replica` says what it would do, `--yes` does it
rebuild-replica *args:
    {{python}} -m infra.replica rebuild "$@"
