"""Resolve the JVM parts (Kafka, Kafka Connect, Debezium) from Maven Central into the user's cache."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from infra.paths import CACHE, REPO

POMS = REPO / "infra" / "maven"


def _resolved_dir(name: str) -> Path:
    pom = POMS / name / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return CACHE / "jars" / f"{name}-{digest}"


def resolve(name: str) -> Path:
    """Copy the runtime classpath of infra/maven/<name>/pom.xml into the cache once; return the folder."""
    target = _resolved_dir(name)
    if (target / ".complete").exists():
        return target
    if shutil.which("mvn") is None:
        raise RuntimeError("mvn is not installed: apt-get install -y maven")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    resolved = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(POMS / name / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        # Quiet Maven 3.8 still writes bare colour resets (ESC[0m) on a terminal; its output is shown only
        # when it fails, where it says why.
        capture_output=True,
        text=True,
    )
    if resolved.returncode != 0:
        sys.stderr.write(resolved.stdout + resolved.stderr)
        raise RuntimeError(f"mvn could not resolve infra/maven/{name}/pom.xml (exit {resolved.returncode})")
    (staging / ".complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def kafka_classpath() -> str:
    return str(resolve("kafka") / "*")


def connect_plugin_path() -> Path:
    """Connect wants each plugin in its own folder under plugin.path."""
    jars = resolve("debezium")
    plugins = jars.parent / f"plugins-{jars.name}"
    plugin = plugins / "debezium-connector-postgres"
    if not (plugins / ".complete").exists():
        shutil.rmtree(plugins, ignore_errors=True)
        plugin.mkdir(parents=True)
        for jar in jars.glob("*.jar"):
            shutil.copy2(jar, plugin / jar.name)
        (plugins / ".complete").write_text("ok\n")
    return plugins


if __name__ == "__main__":
    print(kafka_classpath())
    print(connect_plugin_path())
