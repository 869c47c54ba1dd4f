"""Resolve the JVM parts (Kafka, Kafka Connect, Debezium) from Maven Central into the user's cache."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from infra.paths import CACHE, REPO

POMS = REPO / "infra" / "maven"
# Built from source (infra/maven/pgjdbc-probe) into Debezium's plugin folder: the PostgreSQL driver's socket
# factory there (ProbeSocketFactory.java says why).
PROBE = "pgjdbc-probe"


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
    subprocess.run(
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
        check=True,
    )
    (staging / ".complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _module_digest(name: str) -> str:
    """A digest of every file of infra/maven/<name>: an edited source names a new build."""
    module = POMS / name
    digest = hashlib.sha256()
    for path in sorted(p for p in module.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(module)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build(name: str) -> Path:
    """Package the sources of infra/maven/<name> into a jar in the cache once (the build directory is in the
    cache too, never in the work tree); return the jar."""
    target = CACHE / "jars" / f"{name}-{_module_digest(name)}"
    jar = target / f"{name}.jar"
    if jar.is_file():
        return jar
    if shutil.which("mvn") is None:
        raise RuntimeError("mvn is not installed: apt-get install -y maven")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(POMS / name / "pom.xml"),
            # The module's pom builds into ${module.build.directory}.
            f"-Dmodule.build.directory={staging / 'build'}",
            "package",
        ],
        check=True,
    )
    shutil.copy2(staging / "build" / f"{name}.jar", staging / f"{name}.jar")
    shutil.rmtree(staging / "build")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return jar


def kafka_classpath() -> str:
    return str(resolve("kafka") / "*")


def connect_plugin_path() -> Path:
    """Connect wants each plugin in its own folder under plugin.path: Debezium's jars and the driver's
    socket factory, which must share the driver's class loader."""
    jars = resolve("debezium")
    probe = build(PROBE)
    plugins = jars.parent / f"plugins-{jars.name}-{probe.parent.name}"
    plugin = plugins / "debezium-connector-postgres"
    if not (plugins / ".complete").exists():
        shutil.rmtree(plugins, ignore_errors=True)
        plugin.mkdir(parents=True)
        for jar in [*jars.glob("*.jar"), probe]:
            shutil.copy2(jar, plugin / jar.name)
        (plugins / ".complete").write_text("ok\n")
    return plugins


if __name__ == "__main__":
    print(kafka_classpath())
    print(connect_plugin_path())
