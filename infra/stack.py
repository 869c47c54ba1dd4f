"""The local stack in one command: up, down, status, logs, and one component at a time: stop, start, restart.

Order: PostgreSQL -> pgBackRest (archiving, first backup) -> read replica -> Redis -> Kafka -> Kafka Connect
-> migrations -> connectors -> services and consumers.
Each step waits for real readiness (a query, a PING, a metadata request, a REST call), and a second
``up`` leaves running components alone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from apps.common.topology import PROCESSES, SERVICES, connect_url, replica_port
from infra import backup_physical, connectors, kafka, migrate, monitoring, postgres, priority, proc, redis, replica
from infra.paths import LOGS, PIDS, REPO, STATE, ensure_dirs, log_file


@dataclass(frozen=True)
class Process:
    """A Python process of ours (an HTTP service or a consumer group) run in the background."""

    name: str
    argv: list[str]
    probe: Callable[[], bool]
    url: str | None = None


def _http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)

    return probe


def app_processes() -> list[Process]:
    """Every service that has an app, and every consumer module, found in apps/ (none is hard-coded)."""
    found: list[Process] = []
    python = sys.executable
    for spec in SERVICES:
        folder = REPO / "apps" / spec.name
        if (folder / "app.py").exists():
            port = spec.local_port()
            workers = str(spec.worker_count())
            found.append(
                Process(
                    name=f"{spec.name}-api",
                    argv=[
                        python,
                        "-m",
                        # uvicorn on httptools, bounding a request's head and closing a stalled request
                        "apps.common.http_server",
                        f"apps.{spec.name}.app:create_app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--workers",
                        workers,
                    ],
                    probe=_http_ok(f"http://127.0.0.1:{port}/health"),
                    url=f"http://127.0.0.1:{port}",
                )
            )
        if (folder / "consumers.py").exists():
            metrics_port = spec.local_port() + 100
            found.append(
                Process(
                    name=f"{spec.name}-consumer",
                    argv=[
                        python,
                        "-m",
                        "outbox.runner",
                        f"apps.{spec.name}.consumers",
                        "--metrics-port",
                        str(metrics_port),
                    ],
                    # /ready, not /metrics: up means it owns partitions and its database answers, so a
                    # start (or `just status`) does not call a consumer up while it still waits to join.
                    probe=_http_ok(f"http://127.0.0.1:{metrics_port}/ready"),
                    url=f"http://127.0.0.1:{metrics_port}/metrics",
                )
            )
    for extra in PROCESSES:  # sandboxes, workers, sweepers: apps.common.topology.PROCESSES
        port = extra.local_port()
        argv = [python, "-m", extra.module, "--port", str(port)]
        found.append(Process(extra.name, argv, _http_ok(f"http://127.0.0.1:{port}/health"), f"http://127.0.0.1:{port}"))
    return found


def start_process(process: Process) -> None:
    with _starting(process.name):
        if proc.running(process.name):
            proc.wait_until(process.name, process.probe, timeout=60)  # started by someone else: ready yet?
            return
        port = urllib.parse.urlsplit(process.url).port if process.url else None
        if port is not None and _port_taken(port):
            # A process no pid file names serves there (started by hand, or orphaned): a start would die
            # on the port while the probe, answered by that one, called it ready.
            raise proc.StartError(
                f"{process.name}: 127.0.0.1:{port} is already taken by a process its pid file does not name: "
                f"`ss -ltnp 'sport = :{port}'` names it; stop it by its pid, then start {process.name}"
            )
        pid = proc.spawn(process.name, process.argv, cwd=REPO, env={"PYTHONUNBUFFERED": "1"})
        proc.wait_until(process.name, process.probe, timeout=60, pid=pid)
        hold(process.name, False)  # whoever starts it ends a `just stop`: a later crash is not that stop


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: a stopped server's connections in TIME_WAIT do not count, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def _starting(name: str) -> Iterator[None]:
    """One starter per component across processes. Tests start consumers without the `up` lock; two
    starters racing once left a consumer running under an overwritten pid file, and every later start
    failed on its port."""
    ensure_dirs()
    with (PIDS / f"{name}.start.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another start of it is under way, maybe waiting minutes for its readiness: wait for it
            # without the machine-wide lock, which other components' starts need meanwhile.
            proc.waiting()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start_replica_unless_former_primary() -> str | None:
    """`up`'s replica step: after a promotion the replica's directory holds the old primary until `just
    rebuild-replica --yes`; the stack runs without a replica meanwhile (reads go to the primary)."""
    try:
        replica.start()
    except replica.NotAStandby as exc:
        return f"not started: {exc}"
    return None


def start_postgres() -> None:
    """`up`'s PostgreSQL step: the server's readiness wait without up.lock, the roles' DDL under it (two `up`s
    altering the same role at once can fail with "tuple concurrently updated")."""
    postgres.start_server()
    proc.waiting()  # up.lock let go, if the start did not wait
    with exclusive():
        postgres.bootstrap()


STEPS: list[tuple[str, Callable[[], object]]] = [
    ("postgres", start_postgres),
    ("backups", backup_physical.ensure),
    ("replica", start_replica_unless_former_primary),
    ("redis", redis.start),
    ("kafka", kafka.start_kafka),
    ("connect", kafka.start_connect),
    ("migrations", migrate.upgrade_all),
    ("connectors", connectors.deploy_all),
]  # then monitoring: exporters, Prometheus, Alertmanager (_up)


@dataclass(frozen=True)
class Component:
    """Something `just stop|start|restart NAME` controls: an infrastructure process or one of ours."""

    name: str
    start: Callable[[], object]
    stop: Callable[[], bool]


def _infra_components() -> list[Component]:
    return [
        Component("postgres", postgres.start, postgres.stop),
        Component("replica", replica.start, replica.stop),
        Component("redis", redis.start, redis.stop),
        Component("kafka", kafka.start_kafka, kafka.stop_kafka),
        Component("connect", kafka.start_connect, kafka.stop_connect),
        *(
            Component(d.name, functools.partial(monitoring.start_one, d.name, app_processes), d.stop)
            for d in monitoring.DAEMONS
        ),
    ]


def components() -> dict[str, Component]:
    """Every controllable component by name, in start order."""
    found = {c.name: c for c in _infra_components()}
    for process in app_processes():
        found[process.name] = Component(
            process.name,
            start=functools.partial(start_process, process),
            stop=functools.partial(proc.stop, process.name),
        )
    return found


def component(name: str) -> Component:
    known = components()
    if name not in known:
        raise SystemExit(f"unknown component {name!r}; one of: {', '.join(known)}")
    return known[name]


def stop_component(name: str) -> None:
    print(f"  {name:<18} {'stopped' if component(name).stop() else 'was not running'}", flush=True)


def start_component(name: str) -> None:
    """Start one component and wait for it. The machine-wide up.lock covers what races with an `up` or
    another start (the running check, the spawn, the pid file), not the readiness wait: a consumer waiting
    up to 60 s for a Kafka that is down held it, and `just start kafka` waited behind it (session 30, E)."""
    target = component(name)
    t0 = time.monotonic()  # before the lock: waiting for another `up` is part of what the caller waits
    with _exclusive_until_waiting():
        try:
            target.start()
        except replica.NotAStandby as exc:  # refused before any start: its log says nothing of it
            raise SystemExit(f"FAILED {name}: {exc}") from exc
        except proc.StartError as exc:
            raise SystemExit(f"FAILED {name}: {exc}\n{proc.tail(name)}") from exc
    hold(name, False)
    print(f"  {name:<18} ready ({time.monotonic() - t0:.1f}s)", flush=True)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """up.lock for the whole block: nothing starts meanwhile (`just pitr` and `just rebuild-replica` rewrite a
    data directory under it)."""
    ensure_dirs()
    with (STATE / "up.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _exclusive_until_waiting() -> Iterator[None]:
    """up.lock until the block's first wait (proc.waiting: a readiness poll, another starter's lock)."""
    ensure_dirs()
    with (STATE / "up.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with proc.released_before_waiting(lambda: fcntl.flock(lock, fcntl.LOCK_UN)):
            yield


# `just stop NAME` leaves a marker here until `just start|restart NAME`, `just up` or `just down`: the test
# session's stack fixture starts what is down but leaves such a deliberate stop (an operator's, a
# benchmark's A/B) alone.
HELD = STATE / "held"
# Every integration test needs these; the fixture starts them even after a `just stop`, and says so.
NEEDED_BY_EVERY_TEST = ("postgres", "redis", "kafka", "connect")


def hold(name: str, held: bool) -> None:
    marker = HELD / name
    if held:
        HELD.mkdir(parents=True, exist_ok=True)
        marker.write_text(time.strftime("%H:%M:%S"))
    else:
        marker.unlink(missing_ok=True)


def held() -> dict[str, str]:
    """Components stopped with `just stop NAME` and not running since: {name: the stop's time}."""
    markers = sorted(HELD.glob("*")) if HELD.is_dir() else []
    return {m.name: m.read_text().strip() for m in markers if not proc.running(m.name)}


def not_running() -> list[str]:
    """Components without a live process, in start order."""
    return [name for name in components() if not proc.running(name)]


def up(*, infra_only: bool = False, leave: Collection[str] = ()) -> None:
    """Start what is not running (each step waits for readiness), apart from the components in ``leave``."""
    other = _postgres_of_another_checkout()
    if other is not None:
        # Its steps would point WAL archiving at this checkout and restart PostgreSQL (seen in session 27: a
        # scratch copy sharing .stack, through the test session's `up`, restarted the shared cluster).
        raise SystemExit(
            f"stack: PostgreSQL runs from another checkout ({other}, not {postgres.DATA}): run this from there, "
            "or `just restart postgres` here if this checkout owns the stack"
        )
    _up(infra_only=infra_only, leave=leave)


def up_for_tests() -> list[str]:
    """`up` for a test session: what is down is started, except a component stopped with `just stop NAME`
    (an operator's or a benchmark's deliberate stop), which stays stopped (the tests that need it fail);
    PostgreSQL, Redis, Kafka and Connect are started anyway. Returns one line per component started or
    left stopped (one line in all when everything was down)."""
    down = not_running()
    stopped = held()
    leave = {name for name in stopped if name not in NEEDED_BY_EVERY_TEST}
    up(leave=leave)
    if set(down) == set(components()):
        lines = [f"stack: everything was down; started it{', apart from:' if leave else ''}"]
    else:
        lines = [
            f"stack: {name} was down{f' (`just stop` at {stopped[name]})' if name in stopped else ''}; started"
            for name in down
            if name not in leave
        ]
    return lines + [
        f"stack: {name} left stopped (`just stop` at {stopped[name]}): tests that need it fail; `just start {name}`"
        for name in down
        if name in leave
    ]


def _postgres_of_another_checkout() -> str | None:
    """The data directory the running PostgreSQL was started with, when that is not this checkout's own path
    (a copy whose .stack links to this one's); None otherwise."""
    try:
        pid, started_with = (postgres.DATA / "postmaster.pid").read_text().splitlines()[:2]
        alive = proc.pid_alive(int(pid))  # a crashed postmaster leaves its file behind
    except (OSError, ValueError):
        return None
    return started_with if alive and started_with != str(postgres.DATA) else None


def _up(*, infra_only: bool, leave: Collection[str]) -> None:
    """Each step, and each process's start, holds up.lock until its first wait (as `just start` does): what
    races with another `up` or a `just start` (a running check, a spawn, a pid file, a migration, initdb) runs
    under it, a readiness wait does not. Holding it through the whole `up` made a `just start postgres` wait
    ~47 s for the lock in a soak (session 32, E). Two `up`s take turns step by step."""
    started = time.monotonic()
    monitoring_step = ("monitoring", lambda: monitoring.start_all(app_processes(), leave=leave))
    for name, step in [*STEPS, monitoring_step]:
        if name in leave:
            continue
        t0 = time.monotonic()
        try:
            with _exclusive_until_waiting():
                said = step()
        except proc.StartError as exc:
            raise SystemExit(f"FAILED {name}: {exc}") from exc
        except Exception as exc:
            raise SystemExit(f"FAILED {name}: {exc!r}; logs in {LOGS}") from exc
        outcome = said if isinstance(said, str) else "ready"
        print(f"  {name:<12} {outcome} ({time.monotonic() - t0:.1f}s)", flush=True)
    if not infra_only:
        _start_apps([process for process in app_processes() if process.name not in leave])
    print(f"stack up in {time.monotonic() - started:.1f}s\n")
    print_urls()


def _start_apps(processes: Sequence[Process]) -> None:
    """The services, consumers, workers and sweepers, started together: one after another they took ~1.1 s
    each (spawn, imports, the 0.5-s readiness poll), ~24 s of a cold `up` for 22 processes (session 33, T).
    None waits for another (migrations ran before them), each start keeps `just start`'s rules (up.lock
    until its first wait, its own 60-s readiness timeout); a failure is reported once every start ended."""

    def start(process: Process) -> None:
        with _exclusive_until_waiting():
            start_process(process)

    failed: list[str] = []
    unexpected: BaseException | None = None
    for process, took, exc in started_together(processes, start):
        if exc is None:
            print(f"  {process.name:<18} ready ({took:.1f}s)", flush=True)
        elif isinstance(exc, proc.StartError):
            print(f"  {process.name:<18} FAILED ({took:.1f}s)", flush=True)
            failed.append(f"FAILED {process.name}: {exc}\n{proc.tail(process.name)}")
        else:
            unexpected = unexpected or exc
    if unexpected is not None:
        raise unexpected
    if failed:
        raise SystemExit("\n".join(failed))


_Item = TypeVar("_Item")


def started_together(
    items: Sequence[_Item], start: Callable[[_Item], None]
) -> Iterator[tuple[_Item, float, BaseException | None]]:
    """Run ``start`` for every item at once, one thread each; yield (item, seconds since the first began, what
    it raised or None) as each ends. Daemon threads: a Ctrl-C ends `up` without waiting out the readiness polls."""
    ended: queue.SimpleQueue[tuple[_Item, float, BaseException | None]] = queue.SimpleQueue()
    t0 = time.monotonic()

    def run(item: _Item) -> None:
        error: BaseException | None = None
        try:
            start(item)
        except BaseException as exc:  # handed to the caller, SystemExit included
            error = exc
        ended.put((item, time.monotonic() - t0, error))

    for item in items:
        threading.Thread(target=run, args=(item,), daemon=True).start()
    for _ in items:
        yield ended.get()


def print_urls() -> None:
    print("PostgreSQL      postgresql://127.0.0.1:5432  (just psql SERVICE)")
    print(f"read replica    postgresql://127.0.0.1:{replica_port()}  (hot standby; backups: just backup --info)")
    print("Redis           redis://127.0.0.1:6379")
    print("Kafka           127.0.0.1:9092")
    print(f"Kafka Connect   {connect_url()}/connectors")
    # Debian's build serves only the classic UI: /alerts and /rules answer 404 there.
    print(f"Prometheus      http://127.0.0.1:{monitoring.PROMETHEUS_PORT}  (/classic/alerts, /classic/rules)")
    print(f"Alertmanager    http://127.0.0.1:{monitoring.ALERTMANAGER_PORT}")
    for process in app_processes():
        if process.name.endswith("-consumer"):
            print(f"{process.name:<18} metrics {process.url}")
        elif process.name.endswith("-api"):
            print(f"{process.name:<18} {process.url}  (docs /schema/swagger, metrics /metrics)")
        elif process.url:
            print(f"{process.name:<18} {process.url}")
    print(f"logs            {LOGS}")


def down() -> None:
    for name, stopped in monitoring.stop_all():
        print(f"  {name:<12} {'stopped' if stopped else 'was not running'}")
    for process in reversed(app_processes()):
        if proc.stop(process.name):
            print(f"  {process.name:<12} stopped")
    for name, stop in (
        ("connect", kafka.stop_connect),
        ("kafka", kafka.stop_kafka),
        ("redis", redis.stop),
        ("replica", replica.stop),
        ("postgres", postgres.stop),
    ):
        print(f"  {name:<12} {'stopped' if stop() else 'was not running'}")


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return probe()
    except Exception:
        return False


def _streaming_slots() -> set[str]:
    """Replication slots a client is reading right now (empty if PostgreSQL cannot be asked)."""
    try:
        out = postgres.psql_admin("SELECT slot_name FROM pg_replication_slots WHERE active")
    except Exception:
        return set()
    return {line for line in out.splitlines() if line}


def status() -> int:
    rows: list[tuple[str, bool, str]] = [
        ("postgres", _safe(postgres.ready), "127.0.0.1:5432"),
        ("replica", _safe(replica.ready), f"127.0.0.1:{replica_port()} (streaming read replica)"),
        ("redis", _safe(redis.ready), "127.0.0.1:6379"),
        ("kafka", _safe(kafka.kafka_ready), "127.0.0.1:9092"),
        ("connect", _safe(kafka.connect_ready), connect_url()),
    ]
    if rows[-1][1]:
        streaming = _streaming_slots() if rows[0][1] else set()
        for path in sorted(connectors.CONNECTORS.glob("*.json")):
            name, config = connectors.load(path, {})
            try:
                state, tasks = connectors.status(name, connect_url())
                task_states = ",".join(t["state"] for t in tasks) or "no tasks"
                ok = state == "RUNNING" and bool(tasks) and all(t["state"] == "RUNNING" for t in tasks)
                detail = f"{state} (tasks: {task_states})"
                slot = str(config.get("slot.name", ""))
                if ok and slot and slot not in streaming:
                    # A task that fails on every start (e.g. its slot cannot decode) reads RUNNING between
                    # restarts; an inactive slot gives it away.
                    ok, detail = False, f"{detail}, but slot {slot} is not streaming: see `just logs connect`"
                rows.append((f"connector {name}", ok, detail))
            except Exception:
                rows.append((f"connector {name}", False, "not deployed"))
    rows += [(d.name, proc.running(d.name) and d.ready(), d.ready_url) for d in monitoring.DAEMONS]
    for process in app_processes():
        alive = proc.running(process.name) and _safe(process.probe)
        rows.append((process.name, alive, process.url or f"log {log_file(process.name)}"))
    stopped = held()
    rows = [(n, ok, f"{d}  (`just stop` at {stopped[n]})" if n in stopped else d) for n, ok, d in rows]
    width = max(len(name) for name, _, _ in rows)
    for name, ok, detail in rows:
        cpu = "" if name.startswith("connector ") else f"  [{cpu_priority(name)}]"
        print(f"{name:<{width}}  {'up  ' if ok else 'DOWN'}  {detail}{cpu}")
    if rows[0][1]:
        print(_backups_line())
    return 0 if all(ok for _, ok, _ in rows) else 1


def _backups_line() -> str:
    """pgBackRest's repository in one line: how old the newest backup is and what the WAL archive takes of
    the disk (it grows until a full backup expires; nothing said so before the disk filled). Not a
    component: it does not change the exit status."""
    try:
        repo = backup_physical.state()
        fs = os.statvfs(backup_physical.REPO_DIR)
    except Exception as exc:
        return f"backups: not read ({exc!r})"
    free = fs.f_bavail * fs.f_frsize
    warnings = []
    if repo.late() and not proc.running(backup_physical.FIRST_BACKUP):
        warnings.append("no backup in the last 26 hours")
    if repo.archive_bytes > free:
        warnings.append("the WAL archive is larger than the disk's free space")
    said = f"WARNING ({'; '.join(warnings)}; docs/operations.md, Backups): " if warnings else ""
    return f"backups: {said}{repo.summary()}; {backup_physical.size(free)} free on its disk"


def cpu_priority(name: str) -> str:
    """The component's priority class and its autogroup's nice now, e.g. `pipeline, nice 10`."""
    wanted = priority.class_of(name)
    pid = proc.read_pid(name)
    actual = priority.autogroup_nice(pid) if pid is not None and proc.pid_alive(pid) else None
    if actual is None:
        return f"{wanted.name}, nice -"
    return f"{wanted.name}, nice {actual}" + ("" if actual == wanted.nice() else f" (class: {wanted.nice()})")


def renice() -> int:
    """Apply the priority classes to every running component now, without a restart (after a change of
    `STACK_NICE_<CLASS>`, or on a stack started before the policy)."""
    failed = 0
    for name in components():
        pid = proc.read_pid(name)
        if pid is None or not proc.pid_alive(pid):
            continue
        refused = priority.apply(name, pid)
        failed += refused is not None
        print(f"  {name:<18} {refused or cpu_priority(name)}", flush=True)
    return 1 if failed else 0


def logs(component: str | None, follow: bool) -> None:
    files = [log_file(component)] if component else sorted(LOGS.glob("*.log"))
    if component and not files[0].exists() and component not in components():
        # A misspelt name read "no logs yet": as if the component had logged nothing.
        raise SystemExit(
            f"unknown component {component!r} (no {files[0].name} either); one of: {', '.join(components())}"
        )
    if not files or not all(path.exists() for path in files):
        raise SystemExit(f"no logs yet in {LOGS}")
    subprocess.run(["tail", "-n", "100", *(["-F"] if follow else []), *map(str, files)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start everything (idempotent)")
    up_parser.add_argument("--infra-only", action="store_true", help="components, migrations and connectors only")
    sub.add_parser("down", help="stop everything by pid")
    sub.add_parser("status", help="each component: up or DOWN (exit 1 if any is down), its CPU priority class")
    sub.add_parser("renice", help="apply the CPU priority classes (infra/priority.py) to the running components")
    for verb in ("stop", "start", "restart"):
        verb_parser = sub.add_parser(verb, help=f"{verb} one component (postgres, kafka, connect, order-api, ...)")
        verb_parser.add_argument("component")
    logs_parser = sub.add_parser("logs", help="show logs (all, or one component)")
    logs_parser.add_argument("component", nargs="?")
    logs_parser.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    if args.command in ("up", "down"):
        shutil.rmtree(HELD, ignore_errors=True)  # every component wanted up, or every one down: none held
    if args.command == "up":
        up(infra_only=args.infra_only)
    elif args.command == "down":
        down()
    elif args.command == "status":
        return status()
    elif args.command == "renice":
        return renice()
    elif args.command in ("stop", "restart"):
        stop_component(args.component)
        if args.command == "restart":
            start_component(args.component)
        else:
            hold(args.component, True)
    elif args.command == "start":
        start_component(args.component)
    elif args.command == "logs":
        logs(args.component, args.follow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
