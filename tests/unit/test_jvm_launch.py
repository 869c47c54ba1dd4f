"""How the local stack launches the broker and Connect: the timer slack reaches the JVM's process itself
(same pid, so the pid file still names the JVM), and each long-running JVM logs its collections."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra import kafka
from infra.paths import log_file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timer slack is a Linux setting")
def test_the_timer_slack_is_set_in_the_process_that_execs_the_command() -> None:
    probe = ["sh", "-c", 'echo "$$ $(cat /proc/$$/timerslack_ns)"']
    process = subprocess.Popen(kafka._with_timer_slack(probe), stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=10)
    pid, slack = out.split()
    assert int(pid) == process.pid
    assert int(slack) == kafka.TIMER_SLACK_NS


def test_the_wrapped_command_keeps_its_arguments() -> None:
    out = subprocess.run(kafka._with_timer_slack(["printf", "%s|", "a b", "$HOME"]), capture_output=True, text=True)
    assert out.stdout == "a b|$HOME|"


def test_long_running_jvms_log_their_collections_and_tools_do_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kafka, "STATE", tmp_path)
    server = kafka._jvm("cp", "512m", "kafka.Kafka", "server.properties", component=kafka.KAFKA)
    tool = kafka._jvm("cp", "128m", "kafka.tools.StorageTool", "random-uuid")
    assert f"-Xlog:gc:file={log_file('kafka-gc')}:time,uptime:filecount=2,filesize=4m" in server
    assert not any(flag.startswith("-Xlog") for flag in tool)
    assert "-XX:+UseG1GC" in server and "-XX:+UseG1GC" in tool
    assert server[-2:] == ["kafka.Kafka", "server.properties"]


def test_a_long_running_jvm_writes_its_class_archive_once_then_maps_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kafka, "STATE", tmp_path)
    monkeypatch.setattr(kafka, "_java", lambda component=None: "/usr/bin/java")
    monkeypatch.setattr(kafka, "java_feature_version", lambda java: 17)
    archive = kafka.class_data_archive(kafka.KAFKA, "/usr/bin/java", "jars/*")
    assert f"-XX:ArchiveClassesAtExit={archive}" in kafka._jvm("jars/*", "512m", "kafka.Kafka", component=kafka.KAFKA)
    assert archive.parent.is_dir()
    archive.write_bytes(b"archive")
    assert f"-XX:SharedArchiveFile={archive}" in kafka._jvm("jars/*", "512m", "kafka.Kafka", component=kafka.KAFKA)


def test_the_class_archive_is_per_component_jdk_and_classpath_and_tools_have_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kafka, "STATE", tmp_path)
    names = {
        kafka.class_data_archive(kafka.KAFKA, "/usr/bin/java", "a/*"),
        kafka.class_data_archive(kafka.CONNECT, "/usr/bin/java", "a/*"),
        kafka.class_data_archive(kafka.KAFKA, "/opt/jdk/bin/java", "a/*"),
        kafka.class_data_archive(kafka.KAFKA, "/usr/bin/java", "b/*"),
    }
    assert len(names) == 4
    tool = kafka._jvm("a/*", "128m", "kafka.tools.StorageTool", "random-uuid")
    assert not any("Archive" in flag for flag in tool)


def test_extra_options_reach_only_their_component(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kafka, "STATE", tmp_path)
    monkeypatch.setenv("CONNECT_JVM_OPTS", "-XX:+PrintFlagsFinal -Dx=1")
    connect = kafka._jvm("cp", "768m", "org.apache.kafka.connect.cli.ConnectDistributed", component=kafka.CONNECT)
    broker = kafka._jvm("cp", "512m", "kafka.Kafka", component=kafka.KAFKA)
    at = connect.index("-XX:+PrintFlagsFinal")
    assert connect[at + 1] == "-Dx=1"
    assert "-Dx=1" not in broker


def _fake_jdk(root: Path, name: str, version: str) -> str:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return str(home / "bin" / "java")


def test_the_broker_and_connect_run_on_the_newest_jdk_from_25_and_fall_back_to_java_on_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(kafka, "JVM_ROOT", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java")  # the module infra.kafka uses
    _fake_jdk(tmp_path, "java-17", "17.0.15")
    assert kafka._java(kafka.CONNECT) == "/usr/bin/java"  # no JDK 25: the path's java, as before
    jdk25 = _fake_jdk(tmp_path, "temurin-25", "25.0.3")
    assert kafka.java_feature_version(jdk25) == 25
    assert kafka._java(kafka.CONNECT) == jdk25 and kafka._java(kafka.KAFKA) == jdk25
    assert kafka._java() == "/usr/bin/java"  # tools (StorageTool) stay on the path's java
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "java-17"))
    assert kafka._java(kafka.CONNECT) == str(tmp_path / "java-17" / "bin" / "java")  # JAVA_HOME wins


def test_on_jdk_25_a_long_running_jvm_writes_its_ahead_of_time_cache_once_then_maps_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kafka, "STATE", tmp_path / "state")
    jdk25 = _fake_jdk(tmp_path, "temurin-25", "25.0.3")
    monkeypatch.setattr(kafka, "_java", lambda component=None: jdk25)
    cache = kafka.class_data_archive(kafka.CONNECT, jdk25, "jars/*").with_suffix(".aot")
    first = kafka._jvm("jars/*", "768m", "Main", component=kafka.CONNECT)
    assert f"-XX:AOTCacheOutput={cache}" in first
    assert not any("Archive" in flag for flag in first)  # AppCDS flags would conflict with the cache
    cache.write_bytes(b"cache")
    assert f"-XX:AOTCache={cache}" in kafka._jvm("jars/*", "768m", "Main", component=kafka.CONNECT)
    assert not any("AOT" in flag for flag in kafka._jvm("jars/*", "128m", "Tool"))
