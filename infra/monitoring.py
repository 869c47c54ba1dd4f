"""Monitoring as stack components: PostgreSQL's exporter, the stack exporter, Prometheus and Alertmanager,
and beside them the scheduled retention and archival jobs (``jobs``, infra/jobs.py, 127.0.0.1:9189).

- ``postgres-exporter`` (Debian's prometheus-postgres-exporter, 127.0.0.1:9187) logs in as the
  ``monitoring`` role (pg_monitor) and adds the queries of infra/prometheus/postgres-queries.yml.
- ``stack-exporter`` (infra/stack_exporter.py, 127.0.0.1:9188): Kafka Connect's connector and task
  states, Debezium slots' lag in bytes and seconds, WAL retained, the data dir's disk, dead letters not
  yet redriven, order sagas past their deadline, and the retention jobs' last run.
- ``prometheus`` (127.0.0.1:9090) scrapes both and every service, consumer and worker of the stack
  (the config is written from the stack's process list at each start) and evaluates
  infra/prometheus/rules/*.yml; alerts go to ``alertmanager`` (127.0.0.1:9094; Kafka's controller has
  9093) configured by infra/prometheus/alertmanager.yml.

A daemon marked ``kept`` (the stack exporter) runs under its keeper (infra/keep.py), which starts it again
when it dies.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from apps.common.topology import pg_port
from infra import postgres, proc
from infra.paths import REPO, STATE

PROMETHEUS_DIR = REPO / "infra" / "prometheus"
RULES = PROMETHEUS_DIR / "rules"
STATE_DIR = STATE / "prometheus"
MONITORING_ROLE = "monitoring"


def port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


PROMETHEUS_PORT = port("PROMETHEUS_PORT", 9090)
ALERTMANAGER_PORT = port("ALERTMANAGER_PORT", 9094)
PG_EXPORTER_PORT = port("PG_EXPORTER_PORT", 9187)
STACK_EXPORTER_PORT = port("STACK_EXPORTER_PORT", 9188)
JOBS_PORT = port("JOBS_PORT", 9189)
# Short by default: the local stack is small, and an alert test then waits seconds, not minutes.
SCRAPE_INTERVAL = os.environ.get("PROMETHEUS_SCRAPE_INTERVAL", "5s")
# The services, consumers and workers (19 processes) are scraped every 15 s: no alert or test waits on
# their series sooner (their rules hold for a minute or more, the dashboards' rates span 1 and 5 minutes,
# four samples at least), and a service renders ~17 KB of histograms per scrape, 3-4 ms of its CPU: at
# 5 s, ~30 ms/s of the idle stack's CPU went to monitoring. The exporters, the jobs and Prometheus itself
# stay at SCRAPE_INTERVAL: the long-query alert and the tests read those.
PROCESS_SCRAPE_INTERVAL = os.environ.get("PROMETHEUS_PROCESS_SCRAPE_INTERVAL", "15s")
PROCESS_JOBS = ("api", "consumer", "worker")
EVALUATION_INTERVAL = os.environ.get("PROMETHEUS_EVALUATION_INTERVAL", "5s")


def monitoring_password() -> str:
    return os.environ.get("MONITORING_DB_PASSWORD", "monitoring-local-pw")


def monitoring_dsn(database: str = "postgres", *, port: int | None = None) -> str:
    port = pg_port() if port is None else port
    return f"postgresql://{MONITORING_ROLE}:{monitoring_password()}@127.0.0.1:{port}/{database}?sslmode=disable"


# Seconds postgres-exporter (lib/pq) waits to connect. Without one it waited forever on a server that took
# the connection and did not answer: every later scrape queued behind that one, and Prometheus and
# `just status` saw the exporter down, not PostgreSQL (tests/integration/test_postgres_exporter.py).
# Not in monitoring_dsn: asyncpg would send an unknown parameter on as a server setting.
PG_EXPORTER_CONNECT_TIMEOUT_S = 1


def pg_exporter_env(port: int | None = None) -> dict[str, str]:
    return {"DATA_SOURCE_NAME": f"{monitoring_dsn(port=port)}&connect_timeout={PG_EXPORTER_CONNECT_TIMEOUT_S}"}


class Target(Protocol):
    """A process of the stack Prometheus scrapes (infra.stack.Process is one)."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str | None: ...


# The provider sandbox stands in for a third party's API: it serves no metrics of ours.
NOT_SCRAPED = frozenset({"payment-sandbox"})


def scrape_config(targets: Sequence[Target]) -> dict[str, object]:
    """prometheus.yml as a dict: one job per kind of process, each target labelled with its component."""
    jobs: dict[str, list[dict[str, object]]] = {}
    for target in targets:
        if target.url is None or target.name in NOT_SCRAPED:
            continue
        kind = target.name.rsplit("-", 1)[-1] if target.name.endswith(("-api", "-consumer")) else "worker"
        address = urlsplit(target.url).netloc
        jobs.setdefault(kind, []).append({"targets": [address], "labels": {"component": target.name}})
    jobs["postgres-exporter"] = [{"targets": [f"127.0.0.1:{PG_EXPORTER_PORT}"]}]
    jobs["stack-exporter"] = [{"targets": [f"127.0.0.1:{STACK_EXPORTER_PORT}"]}]
    jobs["jobs"] = [{"targets": [f"127.0.0.1:{JOBS_PORT}"], "labels": {"component": "jobs"}}]
    jobs["prometheus"] = [{"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"]}]
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": EVALUATION_INTERVAL},
        "rule_files": [str(RULES / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": [
            {"job_name": job, "scrape_timeout": "4s", "static_configs": static}
            | ({"scrape_interval": PROCESS_SCRAPE_INTERVAL} if job in PROCESS_JOBS else {})
            for job, static in jobs.items()
        ],
    }


def write_config(targets: Sequence[Target]) -> Path:
    """The generated prometheus.yml (JSON is valid YAML) under .stack/prometheus."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / "prometheus.yml"
    path.write_text(json.dumps(scrape_config(targets), indent=2) + "\n")
    return path


def ensure_monitoring_role() -> None:
    """A login role with pg_monitor (statistics, slots, WAL listing) and no access to any service's data."""
    literal = "'" + monitoring_password().replace("'", "''") + "'"
    postgres.psql_admin(
        "DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MONITORING_ROLE}') THEN "
        f"CREATE ROLE {MONITORING_ROLE} LOGIN PASSWORD {literal}; "
        f"ELSE ALTER ROLE {MONITORING_ROLE} LOGIN PASSWORD {literal}; END IF; END$$; "
        f"GRANT pg_monitor TO {MONITORING_ROLE}"
    )


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise proc.StartError(f"{name} is not installed (just bootstrap installs it)")
    return found


def http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)

    return probe


@dataclass(frozen=True)
class Daemon:
    """One monitoring process: how to run it and how to know it is ready."""

    name: str
    argv: Callable[[], list[str]]
    ready_url: str
    env: Callable[[], dict[str, str]] = dict
    # Under its keeper (infra/keep.py): started again whenever it dies.
    kept: bool = False

    def start(self) -> None:
        self.wait(self.spawn())

    def spawn(self) -> int | None:
        """Start the process unless it runs; its pid, or None when it was running already."""
        if proc.running(self.name):
            return None
        argv = self.argv()
        if self.kept:
            argv = [sys.executable, "-m", "infra.keep", self.name, "--", *argv]
        return proc.spawn(self.name, argv, cwd=REPO, env=self.env())

    def wait(self, pid: int | None) -> None:
        proc.wait_until(self.name, http_ok(self.ready_url), timeout=60, pid=pid)

    def stop(self) -> bool:
        return proc.stop(self.name, timeout=15)

    def ready(self) -> bool:
        try:
            return http_ok(self.ready_url)()
        except Exception:
            return False


def _pg_exporter_argv() -> list[str]:
    ensure_monitoring_role()
    return pg_exporter_argv(PG_EXPORTER_PORT)


def pg_exporter_argv(port: int) -> list[str]:
    return [
        _binary("prometheus-postgres-exporter"),
        f"--web.listen-address=127.0.0.1:{port}",
        f"--extend.query-path={PROMETHEUS_DIR / 'postgres-queries.yml'}",
    ]


def _stack_exporter_argv() -> list[str]:
    ensure_monitoring_role()
    return [sys.executable, "-m", "infra.stack_exporter", "--port", str(STACK_EXPORTER_PORT)]


def _jobs_argv() -> list[str]:
    return [sys.executable, "-m", "infra.jobs", "serve", "--port", str(JOBS_PORT)]


def _prometheus_argv() -> list[str]:
    (STATE_DIR / "data").mkdir(parents=True, exist_ok=True)
    return [
        _binary("prometheus"),
        f"--config.file={STATE_DIR / 'prometheus.yml'}",
        f"--storage.tsdb.path={STATE_DIR / 'data'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        "--web.enable-lifecycle",
    ]


def _alertmanager_argv() -> list[str]:
    storage = STATE / "alertmanager"
    storage.mkdir(parents=True, exist_ok=True)
    return [
        _binary("prometheus-alertmanager"),
        f"--config.file={PROMETHEUS_DIR / 'alertmanager.yml'}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
        "--cluster.listen-address=",
    ]


DAEMONS: tuple[Daemon, ...] = (
    # Ready when it serves its page: /metrics runs every query of a scrape, and the exporter is in the
    # background class (nice 15); under six busy request-class process groups a scrape took 0.6-2.0 s,
    # at the 2 s `just status` gives a probe, which then called it DOWN. PostgreSQL's own state is its
    # pg_up series and `just status`'s postgres row.
    Daemon("postgres-exporter", _pg_exporter_argv, f"http://127.0.0.1:{PG_EXPORTER_PORT}/", env=pg_exporter_env),
    # Kept: it died once (a librdkafka assertion, since isolated in a child: infra/dead_letter_stats.py),
    # and nothing noticed until someone looked at `just status`.
    Daemon("stack-exporter", _stack_exporter_argv, f"http://127.0.0.1:{STACK_EXPORTER_PORT}/health", kept=True),
    # Not monitoring, but run the same way: the scheduled retention and archival jobs (infra/jobs.py).
    Daemon("jobs", _jobs_argv, f"http://127.0.0.1:{JOBS_PORT}/health"),
    Daemon("alertmanager", _alertmanager_argv, f"http://127.0.0.1:{ALERTMANAGER_PORT}/-/ready"),
    Daemon("prometheus", _prometheus_argv, f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready"),
)
BY_NAME = {daemon.name: daemon for daemon in DAEMONS}


def start_all(targets: Sequence[Target], leave: Collection[str] = ()) -> None:
    """Write Prometheus' config from the stack's processes, then start whatever is not running (apart from
    the daemons named in ``leave``).

    A running Prometheus is told to reload, so a process added to the stack is scraped without a restart.
    """
    write_config(targets)
    reload = proc.running("prometheus")
    # All spawned before any is waited for: none depends on another being ready, and the Python ones
    # spend their first seconds importing.
    pids = [(daemon, daemon.spawn()) for daemon in DAEMONS if daemon.name not in leave]
    for daemon, pid in pids:
        daemon.wait(pid)
    if reload:
        request = urllib.request.Request(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


def start_one(name: str, targets: Callable[[], Sequence[Target]]) -> None:
    """`just start prometheus` and friends; Prometheus' config is rewritten first."""
    if name == "prometheus":
        write_config(targets())
    BY_NAME[name].start()


def stop_all() -> list[tuple[str, bool]]:
    return [(daemon.name, daemon.stop()) for daemon in reversed(DAEMONS)]
