#!/usr/bin/env bash
# Install what the local stack needs and is missing: Debian packages (PostgreSQL 15, Redis, Maven, a JDK,
# Prometheus and its exporters)
# and the locked Python environment. Safe to run again; it only installs what is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15 postgresql-client-15)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v mvn >/dev/null || missing+=(maven)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v wrk >/dev/null || missing+=(wrk)
# The README's walkthrough (and tests/e2e/test_readme_walkthrough.py, which runs it) reads answers with jq.
command -v jq >/dev/null || missing+=(jq)
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
# Monitoring (infra/monitoring.py): Prometheus (with promtool), PostgreSQL's exporter, Alertmanager.
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts Prometheus' packages as system services where systemd runs; the stack runs its own
  # (infra/monitoring.py) on the same ports, so the system ones are stopped and disabled.
  if [ -d /run/systemd/system ]; then
    $sudo_cmd systemctl disable --now prometheus prometheus-postgres-exporter prometheus-alertmanager 2>/dev/null || true
  fi
fi

command -v uv >/dev/null || python3 -m pip install --quiet "uv>=0.13"
# Bytecode compiled at install: with PYTHONDONTWRITEBYTECODE set (as in CI) every process start would
# recompile SQLAlchemy and friends, which doubles a consumer's restart time on a loaded machine.
uv sync --frozen --quiet --compile-bytecode
