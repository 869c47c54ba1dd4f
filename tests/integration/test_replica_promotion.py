"""`just promote` on a scratch pair: the promoted replica archives its WAL and has a backup of its own.

Session 31's rehearsal found that PostgreSQL's promotion alone leaves a primary that archives nothing
(the replica runs with archive_mode=off on its command line) and that pgBackRest cannot back up (its
config names the old primary's data directory). infra/promote.py completes it; this runs its steps on a
pair of our own, made as the stack makes its own (infra/postgres.py's settings, pgBackRest's config from
the same template, pg_basebackup -R with a slot, the replica's command-line options): own ports, own
folders under the temporary directory (TMPDIR), own repository. The shared stack is not touched, but for
the outbox re-sync's test, which streams through the dev stack's Kafka Connect and Kafka with a connector,
topics and consumer groups of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from apps.common.topology import connect_url, kafka_bootstrap
from infra import backup_physical, connectors, postgres, promote, replica
from infra.backup_physical import Site
from infra.paths import REPO
from outbox.events import payload_as_dict
from tests.support.consumers import ThrowawayConsumer
from tests.support.kafka import TopicTail, delete_topics
from tests.support.orders import eventually, order_created
from tests.support.pg_fault import free_port

pytestmark = pytest.mark.slow


def _pg(*argv: str) -> str:
    result = postgres.as_pg([*argv])
    assert result.returncode == 0, f"{argv[0]} failed: {result.stdout}{result.stderr}"
    return result.stdout


def _folder(path: Path) -> Path:
    path.mkdir(mode=0o700)
    postgres.chown_for_pg(path)
    return path


@dataclass(frozen=True)
class Server:
    site: Site
    log: Path

    def start(self, *options: str) -> None:
        flags = " ".join(["-p", str(self.site.port), "-k", str(self.site.socket), *options])
        _pg(str(postgres.BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.site.data), "-l", str(self.log),
            "-o", flags)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        postgres.as_pg([str(postgres.BIN / "pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.site.data)])

    def sql(self, statement: str) -> str:
        return postgres.psql_admin(statement, socket=self.site.socket, port=self.site.port).strip()


@contextlib.contextmanager
def scratch_pair(standby_options: list[str]) -> Iterator[tuple[Server, Server, Path]]:
    """A primary archiving into its own pgBackRest repository, with one full backup, and a streaming
    replica of it started with ``standby_options``; both stopped and their folders removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="commerce-promote-"))
    postgres.chown_for_pg(root)  # initdb and pg_basebackup make their folders in it as the postgres user
    primary = Server(Site(root / "primary", free_port(), _folder(root / "primary-run")), root / "primary.log")
    standby = Server(Site(root / "standby", free_port(), _folder(root / "standby-run")), root / "standby.log")
    folder = _folder(root / "pgbackrest")
    for server in (primary, standby):
        server.log.touch()
        postgres.chown_for_pg(server.log)
    try:
        _pg(str(postgres.BIN / "initdb"), "-D", str(primary.site.data), "-U", "postgres", "-E", "UTF8",
            "--locale=C", "--auth-local=peer")  # fmt: skip
        conf = backup_physical.write_config(primary.site, folder)
        settings = {**postgres.SETTINGS, "shared_buffers": "32MB", "max_connections": "20"}
        lines = [f"{key} = {value}" for key, value in {**settings, **postgres.archive_settings(conf)}.items()]
        with (primary.site.data / "postgresql.conf").open("a") as handle:
            handle.write("\n".join(lines) + "\n")
        (primary.site.data / "pg_hba.conf").write_text("local all postgres peer\n" + postgres.REPLICATION_HBA)
        primary.start()
        backup_physical.pgbackrest("stanza-create", conf=conf)
        backup_physical.pgbackrest("--type=full", "backup", conf=conf)
        _pg(str(postgres.BIN / "pg_basebackup"), "-D", str(standby.site.data), "-h", str(primary.site.socket),
            "-p", str(primary.site.port), "-U", "postgres", "-R", "-X", "stream", "-C", "-S", replica.SLOT,
            "--checkpoint=fast")  # fmt: skip
        standby.start(*standby_options)
        yield primary, standby, folder
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# The replica's flags until session 32 (archive_mode=off: promote restarts it first). Today's flags are
# drilled through the stack's own commands below (test_after_a_promotion_every_command_takes_the_promoted_one).
LEGACY = ["-c", "archive_mode=off", "-c", "hot_standby_feedback=on"]


@pytest.mark.parametrize(("options", "restarts_needed"), [(LEGACY, 1)], ids=["legacy"])
def test_a_promoted_replica_archives_its_wal_and_is_backed_up(options: list[str], restarts_needed: int) -> None:
    with scratch_pair(options) as (primary, standby, folder):
        primary.sql("CREATE TABLE before_failover (id int); INSERT INTO before_failover VALUES (1)")
        lsn = primary.sql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + 30
        while standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") != "t":
            assert time.monotonic() < deadline, "the replica did not replay the primary's last write"
            time.sleep(0.1)
        assert standby.sql("SHOW archive_mode") == ("off" if options == LEGACY else "on")
        assert not replica.promoted(standby.site.data)

        restarts: list[float] = []

        def restart() -> None:
            restarts.append(time.monotonic())
            standby.stop()
            standby.start(*replica.server_options())

        promotion = promote.Promotion(standby.site, primary.site.port, folder, restart)
        # The old primary still answers: refused, nothing changed.
        with pytest.raises(promote.Refused, match="two primaries"):
            promote.promote(promotion, say=lambda _: None)
        assert standby.sql("SELECT pg_is_in_recovery()") == "t"

        primary.stop("immediate")  # the primary is lost
        promoted_at = time.time()
        said: list[str] = []
        promote.promote(promotion, say=said.append)

        assert standby.sql("SELECT pg_is_in_recovery()") == "f", said
        assert replica.promoted(standby.site.data)
        assert standby.sql("SELECT count(*) FROM before_failover") == "1"
        standby.sql("INSERT INTO before_failover VALUES (2)")
        assert standby.sql("SHOW archive_mode") == "on"
        assert len(restarts) == restarts_needed, said  # only to drop the legacy archive_mode=off
        conf = promotion.conf
        [stanza] = backup_physical.info(conf)
        [archive] = stanza["archive"]
        assert archive["max"].startswith("00000002"), archive  # a segment of the new timeline, archived
        archived = {p.name for p in (folder / "repo" / "archive" / postgres.STANZA).rglob("*") if p.is_file()}
        assert "00000002.history" in archived
        assert any(name.startswith("00000002") and ".partial" not in name for name in archived), sorted(archived)
        backups = backup_physical.backups(conf)
        assert len(backups) == 2
        newest = backups[-1]
        assert newest["type"] == "full" and newest["timestamp"]["start"] >= int(promoted_at), newest
        assert newest["archive"]["start"].startswith("00000002"), newest
        # pgBackRest reads the config as the stack writes it for a promoted replica, and it answers.
        assert f"pg1-path={standby.site.data}" in conf.read_text()
        backup_physical.pgbackrest("check", conf=conf)

        # Run again (an operator unsure it finished): nothing to promote, no restart, all still holds.
        first = len(said)
        promote.promote(promotion, backup=False, say=said.append)
        assert len(restarts) == restarts_needed and "promoted already" in said[first + 1], said


@dataclass(frozen=True)
class ScratchStack:
    """The stack's own commands on a state directory and ports of their own: a PostgreSQL pair as `just up`
    makes it, under a temporary folder. Each `run` is one process (its steps call the commands' main, as
    `just` does), so paths are read afresh from the primary's record as a new `just` command reads them;
    a few processes, not one per command: importing infra.stack takes seconds on a loaded machine. Their
    connectors are the files in ``connectors`` (none unless a test writes one), never connectors/*.json: those
    name the dev stack's, on the Kafka Connect a scratch stack shares with it."""

    root: Path
    env: dict[str, str]

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def connectors(self) -> Path:
        return self.root / "connectors"

    def run(self, code: str) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-c",
            "import sys\nfrom pathlib import Path\n"
            "from infra import backup_physical, connectors, promote, replica, stack\n"
            f"connectors.CONNECTORS = Path({str(self.connectors)!r})\n{code}",
        ]
        return subprocess.run(command, cwd=REPO, env=self.env, text=True, capture_output=True, timeout=180)

    def ok(self, code: str) -> str:
        result = self.run(code)
        assert result.returncode == 0, f"{code}: {result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    def sql(self, role: str, statement: str) -> str:
        socket, port = ("run", "PG_PORT") if role == "primary" else ("replica-run", "PG_REPLICA_PORT")
        return postgres.psql_admin(statement, socket=self.pg / socket, port=int(self.env[port])).strip()

    def replayed(self, lsn: str) -> None:
        deadline = time.monotonic() + 30
        while self.sql("replica", f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") != "t":
            assert time.monotonic() < deadline, "the replica did not replay the primary's last write"
            time.sleep(0.1)


@contextlib.contextmanager
def scratch_stack() -> Iterator[ScratchStack]:
    root = Path(tempfile.mkdtemp(prefix="commerce-stack-promote-"))
    root.chmod(0o755)  # the postgres user reaches root/pg (else the stack puts it under /var/tmp)
    ports = {"PG_PORT": str(free_port()), "PG_REPLICA_PORT": str(free_port())}
    scratch = ScratchStack(root, {**os.environ, "STACK_STATE_DIR": str(root), **ports})
    scratch.connectors.mkdir()
    try:
        yield scratch
    finally:
        for data in ("data", "replica"):
            postgres.as_pg(
                [str(postgres.BIN / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(scratch.pg / data)]
            )
        shutil.rmtree(root, ignore_errors=True)


def test_after_a_promotion_every_command_takes_the_promoted_one() -> None:
    """`just promote --yes` records the promoted directory as the primary and starts it on the primary's port
    (where every process connects); `just start replica` then refuses the old primary's directory, `just
    promote` has nothing left to do, and `just rebuild-replica --yes` makes it a streaming copy of the new
    primary. Before (session 32): the promoted one stayed on the replica's port, `just start postgres` started
    the old primary again (a second primary, on timeline 1) or, its directory gone, an empty new cluster."""
    with scratch_stack() as s:
        s.ok(
            "stack.main(['start', 'postgres']); backup_physical.write_config()\n"
            "backup_physical.pgbackrest('stanza-create'); stack.main(['start', 'replica'])"
        )
        s.sql("primary", "CREATE TABLE before_failover (id int); INSERT INTO before_failover VALUES (1)")
        s.replayed(s.sql("primary", "SELECT pg_current_wal_lsn()"))

        # The primary is lost; the promotion (its backup is drilled by the legacy case above).
        said = s.ok("stack.main(['stop', 'postgres']); sys.exit(promote.main(['--yes', '--no-backup']))")
        assert "the stack's primary from now on" in said, said
        assert (s.pg / "primary").read_text() == "replica\n"
        row = s.sql(
            "primary", "SELECT pg_is_in_recovery(), current_setting('data_directory'), count(*) FROM before_failover"
        )
        assert row == f"f|{s.pg / 'replica'}|1", row  # on the primary's port and socket
        conf = (s.pg / "pgbackrest" / "pgbackrest.conf").read_text()
        assert f"pg1-path={s.pg / 'replica'}\n" in conf and f"pg1-port={s.env['PG_PORT']}\n" in conf
        [stanza] = backup_physical.info(s.pg / "pgbackrest" / "pgbackrest.conf")
        assert stanza["archive"][0]["max"].startswith("00000002"), stanza["archive"]  # the new timeline archived

        said = s.ok(
            "try:\n    stack.main(['start', 'replica'])\nexcept SystemExit as exc:\n    print('start replica:', exc)\n"
            "print('promote exit', promote.main(['--yes']))\nreplica.main(['rebuild', '--yes'])"
        )
        assert "start replica: FAILED replica" in said and "is no standby" in said, said  # no second primary
        assert "promote exit 2" in said and "nothing to promote" in said, said
        row = s.sql("replica", "SELECT pg_is_in_recovery(), current_setting('data_directory')")
        assert row == f"t|{s.pg / 'data'}", row
        s.replayed(s.sql("primary", "INSERT INTO before_failover VALUES (2); SELECT pg_current_wal_lsn()").split()[-1])
        assert s.sql("replica", "SELECT count(*) FROM before_failover") == "2"


# The event a promotion must not lose: committed on the primary, replayed by the replica, not read by Debezium.
OUTBOX_INSERT = (
    "INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version, "
    "schema_version) VALUES ('{id}', '{aggregate}', 'order', 'order.created', $json${payload}$json$, 1, 1); "
    "SELECT pg_current_wal_lsn()"
)


def _outbox_row(s: ScratchStack) -> tuple[uuid.UUID, str]:
    """An order.created row in the scratch primary's order_db outbox: its event id and the WAL position after it."""
    event_id, created = uuid.uuid4(), order_created(str(uuid.uuid4()))
    payload = json.dumps(payload_as_dict(created))
    sql = OUTBOX_INSERT.format(id=event_id, aggregate=created.order_id, payload=payload)
    lsn = postgres.psql_admin(sql, "order_db", socket=s.pg / "run", port=int(s.env["PG_PORT"])).split()[-1]
    return event_id, lsn


def _connect(method: str, path: str) -> Any:
    return connectors._request(method, f"{connect_url()}{path}")


async def _state(name: str, state: str) -> bool:
    return (await asyncio.to_thread(connectors.status, name, connect_url()))[0] == state


def _applied_once(groups: list[ThrowawayConsumer], events: list[uuid.UUID]) -> Callable[[], Awaitable[bool]]:
    """Whether each group's handler wrote one row for each of these events (one applied twice shows twice)."""

    async def check() -> bool:
        return all([sorted(await group.applied(events)) == sorted(events) for group in groups])

    return check


def _topics_of(prefix: str) -> list[str]:
    """The topics a scratch connector with this prefix made (its events', its heartbeats')."""
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap()}).list_topics(timeout=10).topics
    return [t for t in topics if t.startswith(f"{prefix}.") or t == f"__debezium-heartbeat.{prefix}"]


@pytest.mark.usefixtures("stack")  # its Kafka Connect and Kafka
async def test_an_event_the_connector_had_not_read_reaches_kafka_after_the_promotion() -> None:
    """`just promote --yes` holds the connectors, promotes, and re-syncs the outbox (infra/resync.py): an event
    committed on the primary and replayed by the replica while its connector was paused (not read) is
    published after the promotion, and each consumer group applies it once; an event it had read is
    published again (inside the re-send window) and each group's inbox drops the copy. The scratch stack
    (PostgreSQL pair, order_db migrated) streams through the dev stack's Kafka Connect and Kafka with a
    connector, slot, topic prefix and consumer groups of its own: no dev connector, database or group is
    touched. Before the re-sync (session 33's promote, the connector then resumed): its task FAILED ("...
    no longer available on the server"), and neither that event nor a later one was published."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"test-promote-{tag}"
    name, slot = f"promote-{tag}-outbox", f"promote_{tag}"
    with scratch_stack() as plain:
        s = ScratchStack(plain.root, {**plain.env, "OUTBOX_TOPIC_PREFIX": prefix})
        own = json.loads((connectors.CONNECTORS / "order.json").read_text())
        own["name"] = name
        own["config"] |= {"database.port": s.env["PG_PORT"], "topic.prefix": prefix, "slot.name": slot}
        (s.connectors / "order.json").write_text(json.dumps(own))
        groups = [ThrowawayConsumer(), ThrowawayConsumer()]  # two consumer groups, each with its inbox
        for group in groups:
            group.topic = f"{prefix}.order"  # where the connector routes order.created (its prefix)
        async with groups[0], groups[1]:
            try:
                await asyncio.to_thread(
                    s.ok,
                    "from infra import migrate\nstack.main(['start', 'postgres']); backup_physical.write_config()\n"
                    "backup_physical.pgbackrest('stanza-create'); stack.main(['start', 'replica'])\n"
                    "migrate.main(['order']); connectors.deploy_all()",
                )
                for group in groups:
                    group.start()
                read, _ = _outbox_row(s)
                await eventually(_applied_once(groups, [read]), within=60, what="the first event applied")

                tail = TopicTail(groups[0].topic)
                _connect("PUT", f"/connectors/{name}/pause")
                await eventually(lambda: _state(name, "PAUSED"), within=30, what="the connector paused")
                unread, lsn = _outbox_row(s)
                s.replayed(lsn)
                confirmed = s.sql(
                    "primary",
                    f"SELECT confirmed_flush_lsn < '{lsn}' FROM pg_replication_slots WHERE slot_name = '{slot}'",
                )
                assert confirmed == "t", "Debezium confirmed the unread event before the primary was lost"

                said = await asyncio.to_thread(
                    s.ok,
                    "stack.main(['stop', 'postgres']); sys.exit(promote.main(['--yes', '--no-backup']))",
                )
                print(f"\n{said}")
                assert "connectors streaming from new slots" in said and "order_db: 2 outbox rows" in said, said
                assert "connectors held for the promotion of " in said and " onto timeline 2 (system " in said, said
                assert not (s.pg / "resend-since.json").exists(), "the re-sync done, nothing is owed"
                await eventually(_applied_once(groups, [read, unread]), within=60, what="the unread event applied")
                after, _ = _outbox_row(s)  # the new primary's own, through the new slot
                everything = [read, unread, after]
                await eventually(_applied_once(groups, everything), within=60, what="an event after it applied")

                seen = await asyncio.to_thread(tail.read_until, lambda got: str(after) in {r.event_id for r in got})
                tail.close()
                published = Counter(uuid.UUID(r.event_id) for r in seen)
                # Since the pause: the read event a second time (re-sent), the unread one once, the new one once.
                assert [published[e] for e in everything] == [1, 1, 1], published
                assert await _applied_once(groups, everything)(), "each group applied each event once"
            finally:
                with contextlib.suppress(urllib.error.HTTPError):
                    _connect("DELETE", f"/connectors/{name}")
                delete_topics(_topics_of(prefix))
