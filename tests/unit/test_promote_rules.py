"""The pure parts of `just promote` (infra/promote.py): which directory is the primary, which cluster pgBackRest's
config names, the replica's flags, and when it refuses. The promotion itself runs on a scratch pair and a scratch
stack: tests/integration/test_replica_promotion.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from apps.common.topology import pg_port, replica_port
from infra import backup_physical, connectors, postgres, proc, promote, replica, resync, stack
from tests.support.pg_fault import free_port


@pytest.fixture
def pg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stack's two data directories and the primary's record under tmp_path (data the primary)."""
    monkeypatch.setattr(postgres, "PG_DIR", tmp_path)
    monkeypatch.setattr(postgres, "PRIMARY_RECORD", tmp_path / "primary")
    monkeypatch.setattr(postgres, "DATA", tmp_path / "data")
    monkeypatch.setattr(replica, "DATA", tmp_path / "replica")
    return tmp_path


def _cluster(data: Path, *, standby: bool) -> Path:
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    if standby:
        (data / "standby.signal").touch()
    return data


def test_the_record_names_the_primary_and_the_other_directory_is_the_standby(pg_dir: Path) -> None:
    assert (postgres.primary_name(), postgres.standby_name()) == ("data", "replica")  # no promotion yet
    postgres.record_primary(pg_dir / "replica")
    assert (postgres.primary_name(), postgres.standby_name()) == ("replica", "data")
    assert (pg_dir / "primary").read_text() == "replica\n"
    with pytest.raises(ValueError, match="not one of the stack's data directories"):
        postgres.record_primary(pg_dir / "elsewhere")
    (pg_dir / "primary").write_text("elsewhere\n")
    with pytest.raises(SystemExit, match="names 'elsewhere'"):
        postgres.primary_name()


def test_the_taken_over_replica_is_the_primary_everywhere(pg_dir: Path) -> None:
    """After the take-over the promoted directory is the primary on the primary's port and socket (what
    pgBackRest's config names, what `just start postgres` starts), the old primary's the replica's."""
    _cluster(pg_dir / "data", standby=False)
    _cluster(pg_dir / "replica", standby=True)
    with pytest.raises(proc.StartError, match="not promoted"):
        replica.take_over()  # a standby is taken over only once promoted
    assert postgres.primary_name() == "data" and backup_physical.primary_site().data == pg_dir / "data"

    (pg_dir / "replica" / "standby.signal").unlink()  # pg_ctl promote
    replica.take_over()
    assert (postgres.primary_name(), postgres.DATA, replica.DATA) == ("replica", pg_dir / "replica", pg_dir / "data")
    site = backup_physical.primary_site()
    assert (site.data, site.port, site.socket) == (pg_dir / "replica", pg_port(), postgres.SOCKET_DIR)
    text = backup_physical.config_text()
    assert f"pg1-path={pg_dir / 'replica'}\n" in text and f"pg1-port={pg_port()}\n" in text


def test_the_former_primary_is_not_started_as_the_replica(pg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started with the replica's flags it would be a second primary on the replica's port; `up` goes on
    without a replica, and `just promote` says there is nothing to promote."""
    postgres.record_primary(pg_dir / "replica")
    _cluster(pg_dir / "data", standby=False)
    monkeypatch.setattr(replica, "DATA", pg_dir / "data")
    monkeypatch.setattr(replica, "running", lambda: False)
    monkeypatch.setattr(proc, "spawn", lambda *_, **__: pytest.fail("the former primary was started"))
    with pytest.raises(replica.NotAStandby, match="rebuild-replica --yes"):
        replica.start()
    said = stack.start_replica_unless_former_primary()
    assert said is not None and said.startswith("not started:") and "is no standby" in said
    assert "nothing to promote" in (promote.taken_over_already() or "")
    assert "former primary" in replica.what_rebuild_replaces()

    (pg_dir / "data" / "standby.signal").touch()  # after `just rebuild-replica --yes`
    assert promote.taken_over_already() is None
    assert replica.what_rebuild_replaces().endswith("deleted and copied again")


def test_a_replica_that_was_never_made_is_not_promoted(tmp_path: Path) -> None:
    assert not replica.promoted(tmp_path / "none")


def test_the_replica_keeps_the_copied_archive_mode() -> None:
    """archive_mode=off on its command line left a promoted replica archiving nothing (session 31)."""
    assert not any(option.startswith("archive_mode") for option in replica.server_options())


def test_it_refuses_while_the_primary_answers_or_the_replica_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    p = promote.Promotion(
        backup_physical.Site(Path("/nowhere"), 6001, Path("/nowhere-run")), 6000, Path("/nowhere-br"), lambda: None
    )
    up: set[int] = set()
    monkeypatch.setattr(promote, "answers", lambda port: port in up)
    assert [r.split(":")[0] for r in promote.refusals(p)] == [
        "the replica does not answer on port 6001 (`just start replica`)"
    ]
    up |= {6000, 6001}
    [why] = promote.refusals(p)
    assert "the primary answers on port 6000" in why and "two primaries" in why
    with pytest.raises(promote.Refused, match="two primaries"):
        promote.promote(p, say=lambda _: None)  # before anything is written or run
    up.discard(6000)
    assert promote.refusals(p) == []


def test_without_yes_it_only_says_whether_it_may(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(promote, "answers", lambda port: port == replica_port())
    monkeypatch.setattr(promote, "connect_refusal", lambda: None)
    monkeypatch.setattr(promote, "promote", lambda *_, **__: pytest.fail("promoted without --yes"))
    assert promote.main([]) == 0
    assert "`just promote --yes` does it" in capsys.readouterr().out
    monkeypatch.setattr(promote, "answers", lambda port: True)
    assert promote.main(["--yes"]) == 2
    assert "refusing: the primary answers" in capsys.readouterr().err


def test_rebuild_refuses_when_the_standby_directory_is_the_running_primarys(
    pg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the record lost or wrong, the directory the rebuild deletes could be the one the primary serves."""
    _cluster(pg_dir / "data", standby=False)
    _cluster(pg_dir / "replica", standby=False)
    serving = [pg_dir / "data"]

    def psql_admin(sql: str, *args: object, **kwargs: object) -> str:
        assert "pg_is_in_recovery()" in sql and "data_directory" in sql
        return f"f|{serving[0]}\n"  # psql -At

    monkeypatch.setattr(postgres, "ready", lambda: True)
    monkeypatch.setattr(postgres, "psql_admin", psql_admin)
    assert replica.rebuild_refusals() == []
    serving[0] = pg_dir / "replica"  # the primary runs from the directory the rebuild would delete
    [refusal] = replica.rebuild_refusals()
    assert "the running primary's own directory" in refusal


def test_it_refuses_while_kafka_connect_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The connectors are stopped before the promotion and re-synced after it: without Connect neither can be
    done, and a connector that starts on its own later makes its slot then, past what it had not read."""
    monkeypatch.setattr(promote, "answers", lambda port: port == replica_port())
    monkeypatch.setenv("CONNECT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setattr(promote, "hold_connectors", lambda *_: pytest.fail("held without Connect"))
    assert promote.main(["--yes"]) == 2
    assert "refusing: Kafka Connect does not answer" in capsys.readouterr().err
    monkeypatch.setattr(connectors, "CONNECTORS", tmp_path)  # a stack without connectors needs no Connect
    assert promote.connect_refusal() is None


THIS = promote.PromotionId("7713075405492864662", "/stack/pg/replica", 2)


@pytest.fixture
def two_connectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two connectors, order_db's and x_db's, whose stops and resumes are listed in the returned list."""
    monkeypatch.setattr(promote, "RESEND_RECORD", tmp_path / "resend-since.json")
    done: list[str] = []
    monkeypatch.setattr(resync, "connector_names", lambda: ["order-outbox", "catalog-outbox"])
    monkeypatch.setattr(resync, "connector_databases", lambda: {"order-outbox": "order_db", "catalog-outbox": "x_db"})
    monkeypatch.setattr(resync, "stop_connectors", lambda names, say: done.append(f"stop {' '.join(names)}"))
    monkeypatch.setattr(resync, "resume_connectors", lambda names: done.append(f"resume {' '.join(names)}"))
    return done


def test_what_is_owed_is_recorded_once_and_kept_until_the_resync(
    two_connectors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promotion cut short and run again re-sends from the moments of the first run: by then a connector may
    have streamed on the promoted cluster, and its offsets no longer say what it had missed."""
    read = dt.datetime(2026, 11, 28, 3, 40, tzinfo=dt.UTC)
    lag = {"order-outbox": dt.timedelta(0), "catalog-outbox": dt.timedelta(minutes=5)}
    monkeypatch.setattr(resync, "last_read", lambda name: read - lag[name])

    first = promote.hold_connectors(lambda _: None, THIS)
    owed = {"order_db": read - resync.RESEND_WINDOW, "x_db": read - lag["catalog-outbox"] - resync.RESEND_WINDOW}
    assert first == owed and two_connectors == ["stop order-outbox catalog-outbox"]
    assert promote.read_record() == (THIS, owed)
    monkeypatch.setattr(resync, "last_read", lambda name: read + dt.timedelta(hours=1))  # streamed on since
    assert promote.hold_connectors(lambda _: None, THIS) == first and len(two_connectors) == 2  # same moments
    given = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)
    assert promote.hold_connectors(lambda _: None, THIS, given) == {"order_db": given, "x_db": given}  # --resend-since

    resent: list[resync.Since] = []

    def resend(names: list[str], since: resync.Since, say: object) -> int:
        resent.append(since)
        return 0

    monkeypatch.setattr(resync, "resync", resend)
    promote.resync_outbox(promote.read_record()[1], lambda _: None)
    assert resent == [{"order_db": given, "x_db": given}] and not promote.RESEND_RECORD.exists()
    assert promote.finish_resync(None) == 2  # nothing recorded, no --resend-since: refused
    monkeypatch.setattr(promote, "connect_refusal", lambda: None)
    answer = ["t"]
    monkeypatch.setattr(postgres, "psql_admin", lambda *_, **__: answer[0])
    assert promote.finish_resync(given) == 2 and not resent[1:]  # a standby on the primary's port: not promoted yet
    answer[0] = "f"
    assert promote.finish_resync(given) == 0 and resent[1:] == [{"order_db": given, "x_db": given}]


def test_a_record_left_by_another_promotion_is_not_reused(
    two_connectors: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """V's finding: a record left by a promotion cut short was taken by the next one, whose connectors had
    missed other rows. Only the promotion it names reuses it; --resend-since replaces it."""
    read = dt.datetime(2026, 11, 28, 3, 40, tzinfo=dt.UTC)
    monkeypatch.setattr(resync, "last_read", lambda name: read)
    promote.hold_connectors(lambda _: None, THIS)
    later = promote.PromotionId(THIS.system_identifier, "/stack/pg/data", 3)  # after rebuild-replica
    for other in (later, dataclasses.replace(THIS, system_identifier="7713075405492864663")):
        assert "another promotion" in (promote.record_refusal(other, None) or "")
        with pytest.raises(promote.Refused, match="another promotion"):
            promote.hold_connectors(lambda _: None, other)
    assert two_connectors == ["stop order-outbox catalog-outbox"]  # refused before stopping anything
    assert promote.record_refusal(THIS, None) is None

    # `just promote --yes` says so before it changes anything (with --yes or without).
    monkeypatch.setattr(promote, "answers", lambda port: port == replica_port())
    monkeypatch.setattr(promote, "connect_refusal", lambda: None)
    monkeypatch.setattr(promote, "promotion_id", lambda sql: later)
    monkeypatch.setattr(connectors, "connector_files", lambda: [Path("order.json")])
    monkeypatch.setattr(promote, "promote", lambda *_, **__: pytest.fail("promoted with another's record"))
    assert promote.main(["--yes"]) == 2
    assert "the re-sync record of another promotion" in capsys.readouterr().err

    given = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)
    assert promote.record_refusal(later, given) is None
    assert promote.hold_connectors(lambda _: None, later, given) == {"order_db": given, "x_db": given}
    assert promote.read_record() == (later, {"order_db": given, "x_db": given})

    promote.RESEND_RECORD.write_text('{"order_db": "2026-11-28T03:25:00+00:00", "x_db": null}\n')  # session 34's
    assert "a re-sync record of no promotion" in (promote.record_refusal(THIS, None) or "")


def test_resync_takes_the_record_only_on_its_promotions_primary_or_the_one_it_left(
    two_connectors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resync, "last_read", lambda name: dt.datetime(2026, 11, 28, 3, 40, tzinfo=dt.UTC))
    promote.hold_connectors(lambda _: None, THIS)
    primary = [THIS]
    monkeypatch.setattr(promote, "promotion_id", lambda sql: primary[0])
    assert promote.primary_record_refusal() is None  # the promoted one on 5432
    primary[0] = promote.PromotionId(THIS.system_identifier, "/stack/pg/data", 1)  # the old primary came back
    assert promote.primary_record_refusal() is None
    for other in (
        promote.PromotionId(THIS.system_identifier, "/stack/pg/data", 3),  # promoted again since
        promote.PromotionId("1", THIS.data_directory, 2),  # another cluster
    ):
        primary[0] = other
        assert "not to the primary on port" in (promote.primary_record_refusal() or "")


def test_a_connector_without_offsets_refuses_the_promotion_unless_a_moment_is_given(
    two_connectors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No offsets says nothing about what it read; re-sending its whole outbox (a year) is not a default."""
    read = dt.datetime(2026, 11, 28, 3, 40, tzinfo=dt.UTC)
    monkeypatch.setattr(resync, "last_read", lambda name: read if name == "order-outbox" else None)
    with pytest.raises(promote.NoOffsets, match="connector of x_db"):
        promote.hold_connectors(lambda _: None, THIS)
    assert two_connectors[-1] == "resume order-outbox catalog-outbox" and not promote.RESEND_RECORD.exists()
    given = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)
    assert promote.hold_connectors(lambda _: None, THIS, given) == {"order_db": given, "x_db": given}


def test_the_resend_runs_each_databases_chunks_in_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks' order and size on PostgreSQL: tests/integration/test_outbox_resend.py."""
    sessions: list[tuple[str, list[str]]] = []

    def psql_admin(sql: list[str], database: str) -> str:
        sessions.append((database, sql))
        return {"order_db": "3\n", "x_db": "0\n"}[database]

    monkeypatch.setattr(postgres, "psql_admin", psql_admin)
    said: list[str] = []
    since = dt.datetime(2026, 11, 28, 3, 25, tzinfo=dt.UTC)
    assert resync.resend_outbox({"order_db": since, "x_db": since}, said.append, chunk=500) == 3
    assert [db for db, _ in sessions] == ["order_db", "x_db"]
    plan, *_, loop, count = sessions[0][1]
    assert "created_at >= '2026-11-28T03:25:00+00:00'" in plan and "PARTITION BY aggregate_id" in plan
    assert "p.n <= done + 500" in loop and "COMMIT" in loop and count == "SELECT count(*) FROM resend_plan"
    assert said[0] == "order_db: 3 outbox rows since 2026-11-28T03:25:00+00:00 published again"


def test_the_connectors_last_read_is_their_offsets_commit_time(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "/connectors/a/offsets": {"offsets": [{"partition": {"server": "a"}, "offset": {"ts_usec": 1795837285303123}}]},
        "/connectors/b/offsets": {"offsets": []},
    }
    monkeypatch.setattr(resync, "_connect", lambda method, path: answers[path])
    assert resync.last_read("a") == dt.datetime(2026, 11, 28, 3, 41, 25, 303123, tzinfo=dt.UTC)
    assert resync.last_read("b") is None


def test_a_failed_resync_does_not_stop_the_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-sync runs right after the take-over (the connectors first: every event waits for them); when it
    fails (Connect, Kafka) the checkpoint, the archive check and the backup still run, and then it says so."""
    p = promote.Promotion(
        backup_physical.Site(tmp_path / "standby", 6001, tmp_path / "run"), 6000, tmp_path, lambda: None
    )
    monkeypatch.setattr(promote, "answers", lambda port: port == 6001)
    archive_command = postgres.archive_settings(p.conf)["archive_command"].strip("'")
    answers = {"SELECT pg_is_in_recovery()": "f", "SHOW archive_mode": "on", "SHOW archive_command": archive_command}
    ran: list[str] = []

    def sql(statement: str, *_: object, **__: object) -> str:
        ran.append(statement)
        return answers.get(statement, "00000002")

    monkeypatch.setattr(postgres, "psql_admin", sql)
    monkeypatch.setattr(backup_physical, "pgbackrest", lambda *args, **_: ran.append(" ".join(args)))
    monkeypatch.setattr(backup_physical, "info", lambda conf: [])
    monkeypatch.setattr(backup_physical, "backups", lambda conf: [{"label": "F", "archive": {"start": "00000002"}}])

    def outbox(say: object) -> None:
        ran.append("re-sync")
        raise SystemExit("connectors not RUNNING after 120s: order-outbox")

    with pytest.raises(promote.ResyncOwed, match="order-outbox"):
        promote.promote(p, say=lambda _: None, outbox=outbox)
    assert ran.index("re-sync") < ran.index("CHECKPOINT") and ran[-1] == "--type=full backup", ran
