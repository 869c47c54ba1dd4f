"""PostgreSQL 15 as an unprivileged system user: logical WAL, one database and role per service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from apps.common.topology import CDC_ROLE, SERVICES, ServiceSpec, cdc_password, pg_port
from infra import proc
from infra.paths import REPO, STATE

NAME = "postgres"
BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _pg_dir() -> Path:
    """The data folder must be reachable by the unprivileged user; a clone under a private folder isn't."""
    preferred = STATE / "pg"
    blocked = [p for p in preferred.parents if p.exists() and not p.stat().st_mode & 0o001]
    if os.geteuid() != 0 or not blocked:
        return preferred
    digest = hashlib.sha256(str(STATE).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"commerce-outbox-pg-{digest}"


PG_DIR = _pg_dir()
# Two data directories, `data` and `replica`: either may be the primary. Each is made as the stack's first
# primary or as a copy of the other (infra/replica.py), and `just promote` turns the standby into the primary.
# The roles, not the directories, own the ports and sockets: the primary answers on PG_PORT over SOCKET_DIR
# (what every service, connector and exporter connects to), the standby on PG_REPLICA_PORT. PRIMARY_RECORD
# names the primary's directory once a promotion has happened; without it the primary is `data`.
DIRECTORIES = ("data", "replica")
PRIMARY_RECORD = PG_DIR / "primary"


def primary_name() -> str:
    """The directory (under PG_DIR) of the primary: PRIMARY_RECORD's, else `data`."""
    try:
        name = PRIMARY_RECORD.read_text().strip()
    except FileNotFoundError:
        return DIRECTORIES[0]
    if name not in DIRECTORIES:
        raise SystemExit(f"postgres: {PRIMARY_RECORD} names {name!r}, not one of {', '.join(DIRECTORIES)}")
    return name


def standby_name() -> str:
    return next(name for name in DIRECTORIES if name != primary_name())


def record_primary(data: Path) -> None:
    """From now on ``data`` is the primary's directory and the other one the standby's (`just promote`)."""
    if data.parent != PG_DIR or data.name not in DIRECTORIES:
        raise ValueError(f"{data} is not one of the stack's data directories")
    staged = PRIMARY_RECORD.with_name(PRIMARY_RECORD.name + ".new")
    staged.write_text(data.name + "\n")
    staged.replace(PRIMARY_RECORD)  # a crash leaves the old record or the new one, never half of one


DATA = PG_DIR / primary_name()
SOCKET_DIR = PG_DIR / "run"
# pgBackRest's config, repository and logs live beside the cluster, owned by the same OS user
# (infra/backup_physical.py writes the config; archive_command below reads it).
PGBACKREST_DIR = PG_DIR / "pgbackrest"
PGBACKREST_CONF = PGBACKREST_DIR / "pgbackrest.conf"
STANZA = "commerce"

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    # One slot and one WAL sender per service connector, with room for a second Connect cluster.
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    # Eight services with pools of up to 25 (+ overflow), consumers and Debezium.
    "max_connections": "400",
    "shared_buffers": "256MB",
    "track_commit_timestamp": "on",
    "log_min_duration_statement": "5000",
    # A slow statement is logged without its bind values: they can be a person's data (issue 14).
    "log_parameter_max_length": "0",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}

# WAL volume (issue 11). Full-page images were ~70 % of the WAL's bytes in the minutes after a checkpoint
# (the first change to a page after each checkpoint logs the whole page: the orders table and the indexes
# keyed by customer are written at random pages). Every byte is then read and checksummed by each of the
# eight logical walsenders and the replica's, streamed to the replica, and compressed by pgBackRest's
# archive-push. lz4 halves an index page's image for a few microseconds of a backend's CPU; checkpoints
# every 15 minutes instead of 5 log each hot page's image a third as often. The price of the longer
# interval is crash recovery replaying up to 15 minutes of WAL (seconds at this stack's rates), and up
# to max_wal_size of pg_wal on disk. Commits stay synchronous and fsynced: durability is the point.
# Values in pg_settings' units (s, MB), so a running cluster can be compared and converged (tune()).
#
# No parallel query (issue 11): each parallel worker is a new process that loads its catalog caches cold,
# so on this stack's two shared cores a gathered scan costs more CPU in all than one backend scanning
# alone. The order sweeper's three dashboard counts (whole-table scans of orders and order_sagas every
# 10 s under writes) took 320-620 ms of CPU per round with 2 workers each, 150 ms without, in about
# the same wall time; no request waits on a scan large enough to want workers.
#
# Group commit at moderate rates (issue 11): every WAL flush wakes every walsender (seven Debezium
# slots, each reading and decoding the whole cluster's WAL, and the replica's), and one order's events
# make several services commit at nearly the same moment (the consumers of order.created, then of
# order.confirmed). With commit_delay a committing backend that sees another write transaction in
# progress (commit_siblings = 1) waits 1 ms before it flushes, and the commits that arrive meanwhile ride
# on its flush. At 50 orders/s: WAL flushes per order 1.8-2.95 -> 1.5-1.57, each walsender's wake-ups
# per order 1.8-2.84 -> 1.52-1.59, the walsenders' CPU per order ~2.65 -> ~2.3 ms. Durability is
# unchanged: a commit still returns only after its WAL is fsynced; it may just wait up to 1 ms longer.
# At 150 orders/s it no longer groups (0.88-1.0 flushes per order with 0, 1000 or 3000 us; no CPU difference
# beyond the shared machine's noise, session 29); pgbench's 32 clients get 6-9 % more tps and a quarter fewer
# flushes from it. Kept as it was.
TUNING = {
    "wal_compression": "lz4",
    "checkpoint_timeout": "900",
    "max_wal_size": "2048",
    "max_parallel_workers_per_gather": "0",
    "commit_delay": "1000",
    "commit_siblings": "1",
}


def archive_settings(conf: Path = PGBACKREST_CONF) -> dict[str, str]:
    """WAL archiving through pgBackRest (``conf``) for point-in-time recovery; a restart applies archive_mode."""
    return {
        "archive_mode": "on",
        "archive_command": f"'pgbackrest --config={conf} --stanza={STANZA} archive-push %p'",
        # A quiet cluster still ships a segment a minute, so a recovery point is at most a minute from the archive.
        "archive_timeout": "60",
    }


ARCHIVE_SETTINGS = archive_settings()

# The streaming replica (infra/replica.py) connects over the socket as the superuser, by OS identity.
REPLICATION_HBA = "local   replication  postgres                 peer\n"


def os_user() -> str:
    """PostgreSQL refuses to run as root; use the Debian 'postgres' user (created if missing)."""
    name = os.environ.get("PG_OS_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    return name


def as_pg(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    cmd = argv if os.geteuid() != 0 else ["runuser", "-u", os_user(), "--", *argv]
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def chown_for_pg(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(os_user())
        shutil.chown(path, user.pw_uid, user.pw_gid)


def initialised() -> bool:
    return (DATA / "PG_VERSION").exists()


def init() -> None:
    for folder in (PG_DIR, SOCKET_DIR):
        folder.mkdir(parents=True, exist_ok=True)
        chown_for_pg(folder)
    probe = as_pg(["test", "-w", str(PG_DIR)])
    if probe.returncode != 0:
        raise proc.StartError(
            f"postgres: user {os_user()!r} cannot write {PG_DIR}; every parent folder must be traversable"
        )
    result = as_pg(
        [
            str(BIN / "initdb"),
            "-D",
            str(DATA),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
        ]
    )
    if result.returncode != 0:
        raise proc.StartError(f"postgres: initdb failed:\n{result.stdout}\n{result.stderr}")
    conf = DATA / "postgresql.conf"
    lines = [f"{key} = {value}" for key, value in {**SETTINGS, **TUNING, **ARCHIVE_SETTINGS}.items()]
    lines.append(f"port = {pg_port()}")
    lines.append(f"unix_socket_directories = '{SOCKET_DIR}'")
    with conf.open("a") as handle:
        handle.write("\n# commerce-outbox local stack\n" + "\n".join(lines) + "\n")
    hba = DATA / "pg_hba.conf"
    hba.write_text(
        "# local socket: the postgres superuser only, by OS identity (used by the stack's bootstrap)\n"
        "local   all          postgres                 peer\n"
        f"{REPLICATION_HBA}"
        "# TCP: every role by password. Debezium's logical replication connections name their database and\n"
        "# match this line; no role gets a physical replication connection over TCP (a copy of every database).\n"
        "host    all          all        127.0.0.1/32  scram-sha-256\n"
    )


# A cluster made before session 29 let the CDC role open physical replication connections (pg_basebackup
# of the whole cluster with Debezium's password); its logical ones never needed the line (S).
_CDC_PHYSICAL_HBA = f"host    replication  {CDC_ROLE}   127.0.0.1/32  scram-sha-256"


def drop_cdc_physical_replication(data: Path | None = None) -> bool:
    """Remove that line from an existing cluster's pg_hba.conf (the primary's, or a replica copied from it);
    True if it was there: the caller reloads that server."""
    hba = (data or DATA) / "pg_hba.conf"
    lines = hba.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != _CDC_PHYSICAL_HBA]
    if len(kept) == len(lines):
        return False
    hba.write_text("".join(kept))
    return True


def running() -> bool:
    return as_pg([str(BIN / "pg_ctl"), "status", "-D", str(DATA)]).returncode == 0


def ready() -> bool:
    result = subprocess.run([str(BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(pg_port())], check=False)
    return result.returncode == 0


def start() -> None:
    start_server()
    bootstrap()


def start_server() -> None:
    """initdb on the first start, the server spawned unless it runs, and a wait until it answers."""
    if not initialised():
        if PRIMARY_RECORD.exists():
            # After a promotion an empty cluster here would take the services' writes as if it were theirs
            # (before the record, `just start postgres` made one on a lost primary's path).
            raise proc.StartError(
                f"postgres: the primary's data directory {DATA} (named by {PRIMARY_RECORD}) is missing; not making "
                "an empty cluster there. Restore it (docs/operations.md, Read replica)"
            )
        init()
    pid = None
    if not running():
        # Our process opens the log, so the postgres user needs no access to .stack/logs.
        pid = proc.spawn(NAME, [str(BIN / "postgres"), "-D", str(DATA)], user=os_user() if os.geteuid() == 0 else None)
    proc.wait_until(NAME, ready, timeout=60, pid=pid)


def stop() -> bool:
    if not initialised() or not running():
        return False
    as_pg([str(BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(DATA)])
    proc.stop(NAME, timeout=5)
    return True


def psql_admin(
    sql: str | Sequence[str], database: str = "postgres", *, socket: Path = SOCKET_DIR, port: int | None = None
) -> str:
    """Run SQL as the superuser over the private socket (another cluster's: ``socket`` and ``port``). A sequence:
    each its own transaction, in order, in one session (psql's -c each), so temporary tables carry over."""
    statements = [sql] if isinstance(sql, str) else list(sql)
    result = as_pg(
        [
            str(BIN / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-h",
            str(socket),
            "-p",
            str(pg_port() if port is None else port),
            "-U",
            "postgres",
            "-d",
            database,
            *(arg for statement in statements for arg in ("-c", statement)),
        ]
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}\nSQL: {'; '.join(statements)}")
    return result.stdout


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def bootstrap() -> None:
    """Roles and databases, idempotently: each service role reaches only its own database.

    Each role's password goes to the server as its SCRAM-SHA-256 verifier, as psql's ``\\password`` sends it:
    PostgreSQL logs a statement that fails (and every one under ``log_statement = ddl``), and a bootstrap run
    against a cluster still in recovery left ``ALTER ROLE debezium ... PASSWORD 'debezium-local-pw'`` in the
    server log (session 29, S).
    """
    tune()
    if drop_cdc_physical_replication():
        psql_admin("SELECT pg_reload_conf()")
    existing = set(psql_admin("SELECT datname FROM pg_database").split())
    steps = setup_statements(scram_verifier(cdc_password()), lambda spec: scram_verifier(spec.password()), existing)
    for database, statements in steps:
        psql_admin("; ".join(statements), database=database)


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a password (RFC 5802/7677, as its ``scram_build_secret``): what the server
    keeps, and accepts in ``PASSWORD '...'`` as it is, so the password itself never reaches it."""
    salt = os.urandom(16) if salt is None else salt
    # The server SASLpreps what a client sends: the same for ASCII; NFKC is its normalisation for the rest.
    text = password if password.isascii() else unicodedata.normalize("NFKC", password)
    salted = hashlib.pbkdf2_hmac("sha256", text.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def tune() -> None:
    """A cluster made before TUNING existed gets it: ALTER SYSTEM for what differs, then a reload (each of
    these settings takes effect without a restart)."""
    names = ", ".join(_literal(name) for name in TUNING)
    rows = psql_admin(f"SELECT name, setting FROM pg_settings WHERE name IN ({names})").split()
    current = dict(row.split("|", 1) for row in rows)
    stale = [name for name, value in TUNING.items() if current.get(name) != value]
    for name in stale:
        psql_admin(f"ALTER SYSTEM SET {name} = {_literal(TUNING[name])}")
    if stale:
        psql_admin("SELECT pg_reload_conf()")


Statements = list[tuple[str, list[str]]]
TERSE_ERRORS = "log_error_verbosity = terse"


def setup_statements(
    cdc_secret: str, password_of: Callable[[ServiceSpec], str], existing: set[str] | frozenset[str] = frozenset()
) -> Statements:
    """The roles, databases and grants of every service, as (database to run in, statements) in order.

    The one source for both the local stack (bootstrap, idempotent) and the compose stack's initdb script
    (initdb_sql, for an empty cluster).
    """
    steps: Statements = [("postgres", [_role_sql(CDC_ROLE, cdc_secret, "LOGIN REPLICATION")])]
    for spec in SERVICES:
        # A statement a service's role gets refused is logged without its DETAIL: a constraint violation's
        # shows the values ("Key (email)=(...) already exists", "Failing row contains (...)"), and the
        # server log holds no personal data (issue 14). The other processes' messages keep theirs; a service's
        # deadlock or lock wait loses its DETAIL (the processes and locks) too: while debugging one,
        # `ALTER ROLE <role> RESET log_error_verbosity` for new sessions, and SET it back after.
        role_steps = [_role_sql(spec.role, password_of(spec), "LOGIN"), f"ALTER ROLE {spec.role} SET {TERSE_ERRORS}"]
        steps.append(("postgres", role_steps))
        if spec.database not in existing:
            # CREATE DATABASE cannot run inside a transaction block, so it is a step of its own.
            steps.append(("postgres", [f"CREATE DATABASE {spec.database} OWNER {spec.role}"]))
        steps.append(
            (
                "postgres",
                [
                    f"REVOKE ALL ON DATABASE {spec.database} FROM PUBLIC",
                    f"GRANT CONNECT, TEMPORARY ON DATABASE {spec.database} TO {spec.role}",
                    f"GRANT CONNECT ON DATABASE {spec.database} TO {CDC_ROLE}",
                ],
            )
        )
        # The CDC role may read only what each service's migration grants it (the outbox tables).
        steps.append(
            (spec.database, ["REVOKE ALL ON SCHEMA public FROM PUBLIC", f"GRANT USAGE ON SCHEMA public TO {CDC_ROLE}"])
        )
    return steps


INITDB_SQL = REPO / "infra" / "compose" / "initdb.sql"


def initdb_sql() -> str:
    """infra/compose/initdb.sql: the same roles and databases for the compose stack's first start.

    Passwords are the local development defaults (`<service>-local-pw`), as in the local stack.
    """
    lines = [
        "-- Roles and databases for the compose stack, generated from infra/postgres.py (setup_statements):",
        "-- do not edit; run `python -m infra.postgres initdb-sql > infra/compose/initdb.sql`.",
    ]
    current = "postgres"
    for database, statements in setup_statements(DEFAULT_CDC_PASSWORD, _local_password):
        if database != current:
            lines.append(f"\\connect {database}")
            current = database
        lines += [f"{statement};" for statement in statements]
    if current != "postgres":
        lines.append("\\connect postgres")
    return "\n".join(lines) + "\n"


DEFAULT_CDC_PASSWORD = "debezium-local-pw"


def _local_password(spec: ServiceSpec) -> str:
    return f"{spec.name}-local-pw"


def _role_sql(role: str, password: str, attributes: str) -> str:
    return (
        "DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(role)}) THEN "
        f"CREATE ROLE {role} {attributes} PASSWORD {_literal(password)}; "
        f"ELSE ALTER ROLE {role} {attributes} PASSWORD {_literal(password)}; END IF; END$$"
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["initdb-sql"]:
        raise SystemExit("usage: python -m infra.postgres initdb-sql > infra/compose/initdb.sql")
    sys.stdout.write(initdb_sql())
