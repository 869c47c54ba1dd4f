"""Apache Kafka (KRaft, one combined node) and Kafka Connect with Debezium, from Maven-resolved jars."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from string import Template

from apps.common.topology import CDC_PASSWORD_ENV, cdc_password
from infra import jars, proc
from infra.paths import CONFIG_TEMPLATES, STATE, log_file

KAFKA = "kafka"
CONNECT = "connect"
KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))
CONTROLLER_PORT = int(os.environ.get("KAFKA_CONTROLLER_PORT", "9093"))
CONNECT_PORT = int(os.environ.get("CONNECT_PORT", "8083"))
KAFKA_DIR = STATE / "kafka"
CONNECT_DIR = STATE / "connect"
LOG4J = CONFIG_TEMPLATES / "log4j2.properties"


JVM_ROOT = Path("/usr/lib/jvm")
# The broker and Connect run on the newest installed JDK from this feature version on (its ahead-of-time
# cache, below), else on the path's java (17) with the AppCDS archive. Tools (StorageTool) stay on the path's.
AOT_JAVA = 25
LONG_RUNNING = (KAFKA, CONNECT)


def _java(component: str | None = None) -> str:
    """JAVA_HOME's java if set; for the broker and Connect, else the newest JDK >= 25 under /usr/lib/jvm;
    else `java`."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    if component in LONG_RUNNING:
        newest = _newest_java(JVM_ROOT)
        if newest is not None and java_feature_version(newest) >= AOT_JAVA:
            return newest
    found = shutil.which("java")
    if found is None:
        raise proc.StartError("java is not installed (apt-get install -y openjdk-17-jre-headless)")
    return found


def _newest_java(root: Path) -> str | None:
    candidates = sorted(root.glob("*/bin/java"), key=lambda java: java_feature_version(str(java)))
    return str(candidates[-1]) if candidates else None


def java_feature_version(java: str) -> int:
    """The JDK's feature version (17, 25) from its `release` file; 0 when unknown (treated as old)."""
    release = Path(os.path.realpath(java)).parent.parent / "release"
    try:
        text = release.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("JAVA_VERSION="):
            head = line.split("=", 1)[1].strip('"').split(".")[0]
            return int(head) if head.isdigit() else 0
    return 0


def _render(template: str, target: Path, **values: object) -> Path:
    text = Template((CONFIG_TEMPLATES / template).read_text()).substitute(
        {key: str(value) for key, value in values.items()}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


# Debezium's change-event queue (ChangeEventQueue.poll) waits out each poll interval on a millisecond timer,
# then busy-spins until the wall clock's next millisecond: its remaining time rounds down to 0 a moment
# before it counts as expired. That was ~0.5 ms of CPU per poll per connector, 30-40 % of an idle
# worker's CPU (8 connectors; the order connector polls every 20 ms). With a 1 ms timer slack the kernel
# may end a timed wait up to 1 ms late, which mostly lands past that tick, and it coalesces the other
# timers of both JVMs. Inherited by every thread; set before exec so the pid stays the JVM's.
TIMER_SLACK_NS = 1_000_000


def _with_timer_slack(argv: list[str]) -> list[str]:
    script = f'echo {TIMER_SLACK_NS} > /proc/self/timerslack_ns 2>/dev/null; exec "$@"'
    return ["sh", "-c", script, argv[0], *argv]


def _gc(component: str | None) -> list[str]:
    """G1, and for a long-running JVM one log line per collection in .stack/logs/<component>-gc.log.

    The broker's young generation is fixed at a third of its heap (NewRatio=2): to hold the 20 ms pause goal
    G1 had shrunk it to ~23 MB beside ~220 MB of long-lived broker state, so it collected every ~6 s with
    pauses of 14-107 ms on the two shared cores anyway, each one stalling every produce and fetch. Connect's
    G1 already sizes its young generation large (~480 MB) and collects rarely.
    The serial collector was measured and not kept: with the broker's long-lived heap its young pauses took
    110-270 ms, and Connect's 6-120 ms.
    """
    flags = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
    if component == KAFKA:
        flags.append("-XX:NewRatio=2")
    if component is None:
        return flags
    return [*flags, f"-Xlog:gc:file={log_file(f'{component}-gc')}:time,uptime:filecount=2,filesize=4m"]


def _extra_options(component: str | None) -> list[str]:
    """KAFKA_JVM_OPTS / CONNECT_JVM_OPTS: more JVM options for one long-running JVM (measurements, tuning)."""
    if component is None:
        return []
    return os.environ.get(f"{component.upper()}_JVM_OPTS", "").split()


def class_data_archive(component: str, java: str, classpath: str) -> Path:
    """Where a long-running JVM's application class-data archive lives: one per component, Java binary and
    classpath (a jar upgrade or another JDK names a new file; a stale one is never mapped)."""
    key = hashlib.sha256(f"{java}\0{os.path.realpath(java)}\0{classpath}".encode()).hexdigest()[:12]
    return STATE / "cds" / f"{component}-{key}.jsa"


def _ahead_of_time_cache(component: str, java: str, classpath: str) -> list[str]:
    """Java 25's ahead-of-time cache (JEPs 483, 514, 515): the classes loaded and linked, and the execution
    profiles of the previous run's methods, so the JIT compiles the hot code early with a profile instead of
    profiling it again in tier 3 for minutes. Written at the first run's exit like the AppCDS archive (~90 MB
    for Connect, ~15 s of the stop); a cache that no longer matches is ignored (the JVM starts without it).

    Connect on the live stack, 2-3 minutes after a restart, at 50 orders/s: its compiler threads 1.47 ms of
    CPU per order on Java 17 with AppCDS, 0.25-0.28 on Java 25 with the cache (3.45-3.58 ms per order in all
    against 4.08; commit -> Kafka p99 52-81 ms against 320); 13 minutes after: compiler 0.78 against 1.13,
    Connect 3.83 against 4.10 ms per order, commit -> Kafka p99 54 against 147 ms. The classes of Connect's
    plugin class loaders (Debezium) are not in the cache; only the built-in loaders' are.
    The broker, first 30 s after a restart under the same load: 19.4 s of CPU (8.8 of it compiling) on the
    training run without a cache, 8.8 s (5.4) with it; at 7 minutes its CPU per request was within the
    noise of the Java 17 broker's at 42 (40-60 ms/s of request threads at 50-120 requests/s).
    """
    cache = class_data_archive(component, java, classpath).with_suffix(".aot")
    if cache.is_file() and cache.stat().st_size > 0:
        return [f"-XX:AOTCache={cache}"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    return [f"-XX:AOTCacheOutput={cache}", "-Xlog:aot=error,cds=error"]


def _class_data_sharing(component: str | None, java: str, classpath: str) -> list[str]:
    """Application class-data sharing (AppCDS) for the broker and Connect.

    Loading, parsing and verifying the classes of a start is a large part of its CPU: a scratch broker took
    7.7-8.3 s of CPU to start without an archive and 3.8-5.0 s with one (wall 6.2-8.1 -> 3.5-5.6 s); Connect on
    the live stack 10.4 -> 5.5 s of CPU until ready, 11.1 -> 3.0 s of wall time (its plugins' classes, loaded
    by their own class loaders, are not archived).
    The first start writes the archive when the JVM exits (SIGTERM included: `just stop|restart|down`; a
    SIGKILL writes nothing and the next start tries again), ~50 MB, ~1.5 s of CPU; later starts map it. A
    missing, partial or mismatched archive only warns and starts without sharing (-Xshare:auto).
    """
    if component is None:
        return []
    if java_feature_version(java) >= 25:
        return _ahead_of_time_cache(component, java, classpath)
    archive = class_data_archive(component, java, classpath)
    if archive.is_file() and archive.stat().st_size > 0:
        return [f"-XX:SharedArchiveFile={archive}"]
    archive.parent.mkdir(parents=True, exist_ok=True)
    # The dump warns once per class it leaves out (~340 lines in Connect's log); a mapping run's warnings stay.
    return [f"-XX:ArchiveClassesAtExit={archive}", "-Xlog:cds=error"]


def _jvm(classpath: str, heap: str, main: str, *args: str, component: str | None = None) -> list[str]:
    java = _java(component)
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        *_gc(component),
        *_class_data_sharing(component, java, classpath),
        *_extra_options(component),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}",
        "-cp",
        classpath,
        main,
        *args,
    ]


# The broker's heap (KAFKA_HEAP overrides). At 512 MB its live set (~180 MB at start, ~240 MB after 25 minutes
# under load, then flat) took old-generation occupancy past G1's 45 % initiating threshold: from then on
# concurrent cycles (Remark 80 ms) and mixed collections of 28-121 ms every 1-4 minutes, each stalling every
# produce and fetch on the two shared cores (session 25, kafka-gc.log). At 1 GB the same live set is under a
# quarter of the heap, and the young generation (a third, NewRatio=2) twice as large collects half as often.
BROKER_HEAP = "1g"


def kafka_ready() -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{KAFKA_PORT}", "log_level": 0})
    metadata = admin.list_topics(timeout=2)
    return bool(metadata.brokers)


def start_kafka() -> None:
    if proc.running(KAFKA):
        proc.wait_until(KAFKA, kafka_ready, timeout=60)
        return
    classpath = jars.kafka_classpath()
    config = _render(
        "kafka.properties",
        KAFKA_DIR / "server.properties",
        kafka_port=KAFKA_PORT,
        controller_port=CONTROLLER_PORT,
        log_dirs=KAFKA_DIR / "data",
    )
    if not (KAFKA_DIR / "data" / "meta.properties").exists():
        cluster_id = (
            subprocess.run(
                _jvm(classpath, "128m", "kafka.tools.StorageTool", "random-uuid"),
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            _jvm(
                classpath,
                "128m",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(config),
            ),
            check=True,
            capture_output=True,
            text=True,
        )
    argv = _jvm(classpath, os.environ.get("KAFKA_HEAP", BROKER_HEAP), "kafka.Kafka", str(config), component=KAFKA)
    pid = proc.spawn(KAFKA, _with_timer_slack(argv))
    proc.wait_until(KAFKA, kafka_ready, timeout=120, pid=pid)


def connect_ready() -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{CONNECT_PORT}/connector-plugins", timeout=2) as resp:
        plugins = json.load(resp)
    return any(p["class"].endswith("PostgresConnector") for p in plugins)


def start_connect() -> None:
    if proc.running(CONNECT):
        proc.wait_until(CONNECT, connect_ready, timeout=120)
        return
    classpath = jars.kafka_classpath()
    config = _render(
        "connect-distributed.properties",
        CONNECT_DIR / "connect-distributed.properties",
        kafka_port=KAFKA_PORT,
        connect_port=CONNECT_PORT,
        plugin_path=jars.connect_plugin_path(),
    )
    argv = _jvm(
        classpath,
        os.environ.get("CONNECT_HEAP", "768m"),
        "org.apache.kafka.connect.cli.ConnectDistributed",
        str(config),
        component=CONNECT,
    )
    pid = proc.spawn(
        CONNECT,
        _with_timer_slack(argv),
        # Connector configs say ${env:DEBEZIUM_DB_PASSWORD}; the worker's environment supplies it.
        env={CDC_PASSWORD_ENV: cdc_password()},
    )
    proc.wait_until(CONNECT, connect_ready, timeout=180, pid=pid)


def stop_connect() -> bool:
    return proc.stop(CONNECT, timeout=60)


def stop_kafka() -> bool:
    # The first run on JDK 25 assembles its ahead-of-time cache as it exits (a child JVM, 82 MB): after a
    # 16-minute run under load the broker's stop took ~70 s instead of ~5. A SIGKILL at the timeout loses it.
    return proc.stop(KAFKA, timeout=150)
