"""`just replay GROUP ... [--restart]`: the library's replay (outbox.replay), plus this stack's process control.

    just replay customer-stats --to-earliest --rebuild --restart

With --restart: stop the group's consumer process(es) (`<service>-consumer`, found by reading each
apps/<service>/consumers.py's `group.name`), wait until the broker has no live member left in the group,
run the replay (the rebuild and the offset reset in one transaction, outbox.replay), start the consumers
again, and print the progress until every partition has re-read what was there at the reset. Without it,
the library runs alone and refuses while the group has live members; a member that only the broker still
remembers (a consumer stopped a moment ago) is waited for. outbox/ knows nothing of pid files or `just`:
the process control stays here.
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from apps.common.topology import PROCESSES
from infra import proc, stack
from outbox import groups, replay
from outbox.config import kafka_bootstrap


def consumer_components(group_name: str) -> list[str]:
    """The stack components that run this group: `<service>-consumer` for apps/<service>/consumers.py, or
    the process of apps.common.topology.PROCESSES that runs the group's own module."""
    module = groups.find(group_name)
    own_process = [p.name for p in PROCESSES if p.module == module.__name__]
    service = module.__name__.split(".")[-2]
    name = own_process[0] if own_process else f"{service}-consumer"
    if name not in stack.components():
        raise SystemExit(f"group {group_name} is defined in {module.__name__}, but the stack runs no {name}")
    return [name]


def wait_until_empty(group_name: str, bootstrap: str, timeout: float) -> bool:
    """Wait for the broker to drop the group's members (a stopped static member lingers until its session ends)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    reported = -1
    while (members := replay.live_members(admin, group_name)) > 0:
        if members != reported:
            print(f"waiting for the broker to drop {members} member(s) of {group_name}", flush=True)
            reported = members
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def targets(group_name: str, bootstrap: str) -> dict[tuple[str, int], int]:
    """Each partition's end offset now: once the group has committed past it, the replayed range is re-read."""
    return {(p.topic, p.partition): p.end for p in current_plans(group_name, bootstrap)}


def current_plans(group_name: str, bootstrap: str) -> list[replay.PartitionPlan]:
    topics = groups.find(group_name).group.topics
    return replay.plan(group_name, topics, to_earliest=False, to_datetime=None, to_offset=0, bootstrap=bootstrap)


def show_progress(
    group_name: str,
    bootstrap: str,
    goal: dict[tuple[str, int], int],
    timeout: float,
) -> bool:
    """Print the remaining lag (towards the ends seen at the reset) until it is gone; False on timeout."""
    started = time.monotonic()
    first: int | None = None
    while True:
        try:
            plans = current_plans(group_name, bootstrap)
        except KafkaException as exc:
            # The broker away (a crash, a restart): the consumers re-read on their own once it is back, and the
            # inbox skips what they read twice. This ended the command with a traceback, the replay going on.
            if time.monotonic() - started > timeout:
                print(f"replay {group_name}: no answer from the broker after {timeout:.0f}s: {exc}", file=sys.stderr)
                return False
            print(f"replay {group_name}: the broker does not answer ({exc}); asking again", flush=True)
            time.sleep(2)
            continue
        remaining = sum(max(goal.get((p.topic, p.partition), 0) - max(p.current, 0), 0) for p in plans)
        first = remaining if first is None else first
        elapsed = time.monotonic() - started
        rate = (first - remaining) / elapsed if elapsed > 0 else 0.0
        print(f"replay {group_name}: lag {remaining:>8}  ({rate:,.0f} events/s, {elapsed:.0f}s)", flush=True)
        if remaining == 0:
            return True
        if elapsed > timeout:
            print(f"replay {group_name}: still {remaining} behind after {timeout:.0f}s", file=sys.stderr)
            return False
        time.sleep(1)


def replay_with_restart(group_name: str, replay_argv: list[str], bootstrap: str, *, timeout: float) -> int:
    names = consumer_components(group_name)
    for name in names:
        stack.stop_component(name)
    try:
        if not wait_until_empty(group_name, bootstrap, timeout):
            print(f"group {group_name} still has live members: are consumers running elsewhere?", file=sys.stderr)
            return 2
        code = replay.main(replay_argv)
        goal = targets(group_name, bootstrap) if code == 0 else {}
    finally:
        # Started again whatever happened: a failed replay must not leave the projection without its consumer.
        for name in names:
            stack.start_component(name)
    if code != 0:
        return code
    return 0 if show_progress(group_name, bootstrap, goal, timeout) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every other option goes to outbox.replay (`uv run --frozen python -m outbox.replay --help`).\n"
        "What each changes: --to-earliest | --to-datetime T | --to-offset N moves the group's committed offsets\n"
        "on its topics (it reads those events again; its inbox skips the ones it applied already); --rebuild\n"
        "also EMPTIES the group's projection tables and its inbox rows (all but the events `just dlq ack`\n"
        "recorded as acknowledged), in the reset's transaction, so the projection is rebuilt from the events;\n"
        "--dry-run prints the moves per partition and changes nothing;\n"
        "--follow prints the lag until the group has caught up.",
    )
    parser.add_argument("group")
    parser.add_argument("--restart", action="store_true", help="stop the group's consumers, replay, start them")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for members to go, lag to end")
    parser.add_argument("--bootstrap", default=None)
    args, rest = parser.parse_known_args(argv)
    bootstrap = args.bootstrap or kafka_bootstrap()
    replay_argv = [args.group, *rest, "--bootstrap", bootstrap]
    if "--dry-run" in rest:
        return replay.main(replay_argv)
    if args.restart:
        without_follow = [a for a in replay_argv if a != "--follow"]  # the progress is shown after the start
        return replay_with_restart(args.group, without_follow, bootstrap, timeout=args.timeout)
    if not any(proc.running(name) for name in consumer_components(args.group)):
        # Our consumers are stopped; a member the broker still lists is one of them on its way out.
        wait_until_empty(args.group, bootstrap, timeout=min(args.timeout, 120.0))
    return replay.main(replay_argv)


if __name__ == "__main__":
    sys.exit(main())
