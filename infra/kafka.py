"""Apache Kafka (KRaft, one combined node) and Kafka Connect with Debezium, from Maven-resolved jars."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from string import Template

from apps.common.topology import CDC_PASSWORD_ENV, cdc_password
from infra import jars, proc
from infra.paths import CONFIG_TEMPLATES, STATE

KAFKA = "kafka"
CONNECT = "connect"
KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))
CONTROLLER_PORT = int(os.environ.get("KAFKA_CONTROLLER_PORT", "9093"))
CONNECT_PORT = int(os.environ.get("CONNECT_PORT", "8083"))
KAFKA_DIR = STATE / "kafka"
CONNECT_DIR = STATE / "connect"
LOG4J = CONFIG_TEMPLATES / "log4j2.properties"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise proc.StartError("java is not installed (apt-get install -y openjdk-17-jre-headless)")
    return found


def _render(template: str, target: Path, **values: object) -> Path:
    text = Template((CONFIG_TEMPLATES / template).read_text()).substitute(
        {key: str(value) for key, value in values.items()}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def _jvm(classpath: str, heap: str, main: str, *args: str) -> list[str]:
    return [
        _java(),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}",
        "-cp",
        classpath,
        main,
        *args,
    ]


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
    pid = proc.spawn(KAFKA, _jvm(classpath, os.environ.get("KAFKA_HEAP", "512m"), "kafka.Kafka", str(config)))
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
    pid = proc.spawn(
        CONNECT,
        _jvm(
            classpath,
            os.environ.get("CONNECT_HEAP", "768m"),
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(config),
        ),
        # Connector configs say ${env:DEBEZIUM_DB_PASSWORD}; the worker's environment supplies it.
        env={CDC_PASSWORD_ENV: cdc_password()},
    )
    proc.wait_until(CONNECT, connect_ready, timeout=180, pid=pid)


def stop_connect() -> bool:
    return proc.stop(CONNECT, timeout=60)


def stop_kafka() -> bool:
    return proc.stop(KAFKA, timeout=60)
