"""pgbench as the benchmarks run it (bench/orders.py's ceiling, bench/consumer.py's durable ceiling): its
command line, its figures, and a check of a script's variables.

The protocol matters. pgbench's default, ``-M simple``, sends each statement as text: every transaction's
statements are parsed, analysed, rewritten and planned afresh. The services send theirs through asyncpg,
which prepares each statement once per connection and then only binds and executes it; PostgreSQL keeps a
generic plan once it is no dearer than the custom ones (plan_cache_mode auto: after 5 custom plans) and
plans afresh otherwise. ``-M prepared`` does the same (named statements, prepared once per connection).
In that mode pgbench sends each ``:name`` as a ``$n`` parameter, but one inside quotes stays text: the
statement would get the string ":name" (or "$1") instead of its value, so a script run with ``-M prepared``
names its variables unquoted and casts them where PostgreSQL cannot infer the type (``CAST(:oid AS uuid)``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from apps.common.topology import ServiceSpec, pg_host, pg_port

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"

# A single-quoted literal ('' is a quote inside it) or a "--" comment, whichever starts first.
_LITERAL_OR_COMMENT = re.compile(r"'(?:[^']|'')*'|--[^\n]*")
_VARIABLE = re.compile(r"(?<!:):([A-Za-z_]\w*)")


def quoted_variables(sql: str) -> list[str]:
    """The pgbench variables written inside quotes in ``sql`` (comments aside): with ``-M prepared`` (and
    ``extended``) each would reach PostgreSQL as literal text, not as its value."""
    found: list[str] = []
    for token in _LITERAL_OR_COMMENT.finditer(sql):
        if token.group().startswith("'"):
            found += _VARIABLE.findall(token.group())
    return found


def script_variables(sql: str) -> set[str]:
    """The pgbench variables ``sql`` reads (``:name`` outside quotes and comments; ``::type`` is a cast)."""
    return set(_VARIABLE.findall(_LITERAL_OR_COMMENT.sub(" ", sql)))


def gset_names(sql: str) -> set[str]:
    """The variables the script's ``\\gset`` queries set: each column alias (``AS name``) before the ``\\gset``."""
    names: set[str] = set()
    for query in re.findall(r"(?:^|;)([^;]*?)\\gset", _LITERAL_OR_COMMENT.sub(" ", sql)):
        names.update(re.findall(r"\bAS\s+(\w+)\s*(?=,|$)", query.strip(), re.IGNORECASE))
    return names


def defined(options: Sequence[str]) -> set[str]:
    """The variables a command line's ``-D name=value`` options set."""
    return {value.split("=", 1)[0] for flag, value in pairwise(options) if flag == "-D"}


def pgbench_argv(
    spec: ServiceSpec,
    script: Path,
    *,
    seconds: int,
    clients: int,
    mode: str,
    options: Sequence[str] = (),
) -> list[str]:
    """pgbench running ``script`` on ``spec``'s database as its role, with ``clients`` connections on at
    most 2 threads (the machine's cores) for ``seconds``; ``options`` go before the database."""
    return [
        PGBENCH,
        "-h",
        pg_host(),
        "-p",
        str(pg_port()),
        "-U",
        spec.role,
        "-n",  # no vacuum of pgbench's own tables: there are none
        "-M",
        mode,
        "-f",
        str(script),
        "-c",
        str(clients),
        "-j",
        str(min(2, clients)),
        "-T",
        str(seconds),
        *options,
        # pgbench's database is its last argument: its -d is --debug (every statement and protocol message to
        # stderr), which bench-consumer's ceiling had been measured with until session 20, lower and noisier.
        spec.database,
    ]


def pgbench_result(stdout: str) -> tuple[float, int]:
    """pgbench's tps (without the initial connection time) and the transactions it ran."""
    tps = re.search(r"tps = ([\d.]+)", stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", stdout)
    if tps is None or done is None:
        raise SystemExit(f"pgbench printed no tps:\n{stdout}")
    return float(tps.group(1)), int(done.group(1))


def progress_rates(stderr: str) -> list[float]:
    """The rates pgbench printed with ``-P`` (one per interval), in order."""
    return [float(t) for t in re.findall(r"^progress: [\d.]+ s, ([\d.]+) tps", stderr, re.MULTILINE)]
