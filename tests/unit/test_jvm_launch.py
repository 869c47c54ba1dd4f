"""How the local stack launches the broker and Connect: the timer slack reaches the JVM's process itself
(same pid, so the pid file still names the JVM), and each long-running JVM logs its collections."""

from __future__ import annotations

import subprocess
import sys

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


def test_long_running_jvms_log_their_collections_and_tools_do_not() -> None:
    server = kafka._jvm("cp", "512m", "kafka.Kafka", "server.properties", component=kafka.KAFKA)
    tool = kafka._jvm("cp", "128m", "kafka.tools.StorageTool", "random-uuid")
    assert f"-Xlog:gc:file={log_file('kafka-gc')}:time,uptime:filecount=2,filesize=4m" in server
    assert not any(flag.startswith("-Xlog") for flag in tool)
    assert "-XX:+UseG1GC" in server and "-XX:+UseG1GC" in tool
    assert server[-2:] == ["kafka.Kafka", "server.properties"]
