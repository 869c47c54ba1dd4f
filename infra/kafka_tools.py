"""Kafka's own command-line tools, run from the Maven-resolved jars (no Kafka distribution needed)."""

from __future__ import annotations

import os
import sys

from apps.common.topology import kafka_bootstrap
from infra import jars
from infra.kafka import _java
from infra.paths import CONFIG_TEMPLATES

LOG4J = CONFIG_TEMPLATES / "log4j2-tools.properties"

TOOLS = {"consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"}


def command(tool: str, args: list[str]) -> list[str]:
    if "--bootstrap-server" not in args:
        args = ["--bootstrap-server", kafka_bootstrap(), *args]
    java = [_java(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", jars.kafka_classpath()]
    return [*java, TOOLS[tool], *args]


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        raise SystemExit(f"usage: python -m infra.kafka_tools {{{','.join(TOOLS)}}} [args...]")
    argv = command(sys.argv[1], sys.argv[2:])
    os.execv(argv[0], argv)
