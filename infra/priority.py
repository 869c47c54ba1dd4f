"""Which share of the CPU each stack process gets: its priority class, applied as its autogroup's nice.

With autogroup scheduling on (/proc/sys/kernel/sched_autogroup_enabled, the default of most distributions)
the kernel puts every session in its own scheduling group and shares the cores equally between the runnable
groups; a process's own nice value only ranks it inside its group. Every component is started in its own
session (infra/proc.py), so a plain `nice` did nothing, and Kafka, Connect and seven consumers each took as
much CPU as the order API. The group's nice (/proc/<pid>/autogroup) does rank groups: the request path gets
more, the asynchronous path less and the monitoring least when the cores are contended; an idle core still
runs whatever group is runnable, so nothing is lost when the machine is not busy. Why deferring the
asynchronous path is safe: docs/decisions.md, "CPU priority classes".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from apps.common.topology import PROCESSES


@dataclass(frozen=True, slots=True)
class PriorityClass:
    """A class of components and its autogroup nice (``STACK_NICE_<CLASS>`` overrides the default)."""

    name: str
    default_nice: int
    why: str

    @property
    def env(self) -> str:
        return f"STACK_NICE_{self.name.upper()}"

    def nice(self) -> int:
        return int(os.environ.get(self.env, self.default_nice))


# Tuned under `just bench` (docs/decisions.md, "CPU priority classes"): the more the pipeline is deferred, the more
# orders the peak run places and the later commit-to-stats at half that rate. Request -5 / pipeline 0 met both
# fixed-rate tails (ratio 0.33); pipeline 5 reached a ratio of 0.66-0.68 but a commit-to-stats p99 of 405-783 ms.
# A negative nice needs CAP_SYS_NICE; without it the APIs stay at 0.
REQUEST = PriorityClass("request", -5, "an HTTP client waits on it: the APIs, their database and Redis")
PIPELINE = PriorityClass("pipeline", 0, "moves committed events on: Kafka, Connect, consumers, workers, sweepers")
BACKGROUND = PriorityClass("background", 15, "nothing waits on it within seconds: monitoring, jobs, the replica")
CLASSES: dict[str, PriorityClass] = {c.name: c for c in (REQUEST, PIPELINE, BACKGROUND)}

# Infrastructure and monitoring by name; `<service>-api` is request and `<service>-consumer` pipeline by their
# suffix, and our other processes carry their class in apps.common.topology.PROCESSES.
BY_COMPONENT: dict[str, str] = {
    "postgres": "request",
    "redis": "request",
    "kafka": "pipeline",
    "connect": "pipeline",
    "replica": "background",
    "first-backup": "background",
    "postgres-exporter": "background",
    "stack-exporter": "background",
    "prometheus": "background",
    "alertmanager": "background",
    "jobs": "background",
}


def class_of(component: str) -> PriorityClass:
    """The component's class; an unknown name is request, the nice 0 it would have without this policy."""
    if component in BY_COMPONENT:
        return CLASSES[BY_COMPONENT[component]]
    for spec in PROCESSES:
        if spec.name == component:
            return CLASSES[spec.priority]
    if component.endswith("-consumer"):
        return PIPELINE
    return REQUEST


_AUTOGROUP = re.compile(r"/autogroup-\d+ nice (-?\d+)")


def autogroup_nice(pid: int) -> int | None:
    """The nice of pid's autogroup, None if the kernel has no autogroups or the process is gone."""
    try:
        match = _AUTOGROUP.match(Path(f"/proc/{pid}/autogroup").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def apply(component: str, pid: int) -> str | None:
    """Give pid's autogroup its class's nice; the reason it could not, or None when it did.

    Only a session leader is touched: its autogroup is its own (a process still in our session would share
    the caller's group, and renicing it would renice `just up` and whatever else runs in that session).
    """
    nice = class_of(component).nice()
    try:
        if os.getsid(pid) != pid:
            return f"pid {pid} is not a session leader, so its autogroup is not its own"
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except OSError as exc:  # autogroup off (no file), a negative nice without CAP_SYS_NICE, a process gone
        return f"autogroup nice {nice} not applied to pid {pid}: {exc.strerror or exc}"
    return None


# The kernel's weight of each nice value, -20 to 19 (kernel/sched/core.c, sched_prio_to_weight): a group's share
# under contention is its weight over the runnable groups' total. Docker's cpu_shares takes the same numbers.
_WEIGHTS = (
    *(88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916),
    *(9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277),
    *(1024, 820, 655, 526, 423, 335, 272, 215, 172, 137),
    *(110, 87, 70, 56, 45, 36, 29, 23, 18, 15),
)


def cpu_weight(nice: int) -> int:
    """The scheduler weight of a nice value: what compose's cpu_shares says for the same class."""
    return _WEIGHTS[max(-20, min(19, nice)) + 20]
