"""Replay a consumer group: reset its offsets (to earliest, a time, or an offset) and let it catch up.

    python -m outbox.replay customer-stats --to-earliest --dry-run
    python -m outbox.replay customer-stats --to-earliest --rebuild --follow

Refuses while the group has live members (stop its consumers first). Without --rebuild the inbox makes the
replay a no-op for events already applied, which is right for a plain redelivery; --rebuild also empties the
group's projection tables and its inbox rows, so the projection is rebuilt from the events. Kafka's own
`kafka-consumer-groups.sh --reset-offsets` works just as well without --rebuild: the consumers do not care
how their offsets moved.

The rebuild is one database transaction that locks the projection tables, empties them and the group's
inbox rows, and moves the offsets before it commits. The broker refuses an offset change while the group has
a member, so a consumer started meanwhile (by hand, between the member check and the rebuild) either makes
the reset fail, and the transaction rolls back with nothing emptied, or joins after the reset and waits on
the locks: what it applies lands in the emptied projection. Emptied before (or without) that, the window lost
events: applied into the projection and inbox the rebuild then deleted, past offsets it had committed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from outbox import groups, inbox
from outbox.config import kafka_bootstrap


@dataclass(frozen=True)
class PartitionPlan:
    topic: str
    partition: int
    current: int  # committed offset, -1 if none
    target: int
    end: int

    def describe(self) -> str:
        current = "none" if self.current < 0 else str(self.current)
        return (
            f"{self.topic}[{self.partition}]  committed {current:>8} -> {self.target:>8}"
            f"  (end {self.end}, {self.end - self.target} to re-read)"
        )


def live_members(admin: AdminClient, group: str) -> int:
    description = admin.describe_consumer_groups([group])[group].result()
    return len(description.members)


def plan(
    group: str,
    topics: list[str],
    *,
    to_earliest: bool,
    to_datetime: dt.datetime | None,
    to_offset: int | None,
    bootstrap: str,
) -> list[PartitionPlan]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        committed = {(tp.topic, tp.partition): tp.offset for tp in committed_offsets(consumer, partitions)}
        if to_datetime is not None:
            millis = int(to_datetime.timestamp() * 1000)
            by_time = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, millis) for tp in partitions])
        plans = []
        for index, tp in enumerate(partitions):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if to_earliest:
                target = low
            elif to_datetime is not None:
                found = by_time[index].offset
                target = high if found < 0 else found  # no record at or after the time: nothing to re-read
            else:
                assert to_offset is not None
                target = min(max(to_offset, low), high)
            plans.append(
                PartitionPlan(tp.topic, tp.partition, committed.get((tp.topic, tp.partition), -1), target, high)
            )
        return plans
    finally:
        consumer.close()


def committed_offsets(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """The group's committed offsets, read by a consumer of the group that never joins it.

    Not AdminClient.list_consumer_group_offsets: for a group whose coordinator shard Kafka 4.3.0 left FAILED (a
    commit during the load race of an unclean restart: "state machine ... out of sync", every call then
    NOT_COORDINATOR until the broker restarts) it killed the process with SIGSEGV (confluent-kafka 2.16.1, a
    scratch broker, 2026-11-28), before the replay's ``finally`` started the group's consumers again. This
    raises a KafkaException (NOT_COORDINATOR) instead, which the replay reports as refused."""
    return list(consumer.committed(partitions, timeout=10))


class ResetRefused(RuntimeError):
    """Kafka did not move every partition's offset to its target: the group was not reset."""


def reset(group: str, plans: list[PartitionPlan], bootstrap: str) -> None:
    """Move the group's committed offsets to the plans' targets, and read them back.

    Kafka answers an offset change per partition: a refused partition (its coordinator still loading after
    a broker restart, for one) comes back inside the result, not as an exception. Ignoring it once left a
    rebuilt projection empty: the group restarted at its old offsets, past every event (session 29)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(p.topic, p.partition, p.target) for p in plans])
    answered = admin.alter_consumer_group_offsets([request])[group].result()
    refused = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in answered.topic_partitions or [] if tp.error]
    if refused:
        raise ResetRefused(f"Kafka refused to move the offsets of group {group}: {'; '.join(refused)}")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        held = committed_offsets(consumer, [TopicPartition(p.topic, p.partition) for p in plans])
    finally:
        consumer.close()
    now = {(tp.topic, tp.partition): tp.offset for tp in held}
    wrong = [
        f"{p.topic}[{p.partition}] at {now.get((p.topic, p.partition))}, not {p.target}"
        for p in plans
        if now.get((p.topic, p.partition)) != p.target
    ]
    if wrong:
        raise ResetRefused(f"group {group}'s offsets did not move: {'; '.join(wrong)}")


# A reader of the projection holding its lock this long makes the rebuild give up (nothing emptied) rather
# than queue every consumer and API read of those tables behind it.
REBUILD_LOCK_TIMEOUT = "10s"


async def rebuild(group: str, database_url_: str, tables: tuple[str, ...], reset_offsets: Callable[[], None]) -> None:
    """Empty the projection, forget the group's inbox and move its offsets (``reset_offsets``) in one
    transaction: all of it, or none of it. The tables are locked first (ACCESS EXCLUSIVE: a handler reading
    them waits too) and the group's inbox rows deleted before the offsets move, so a consumer that joins
    after the reset waits on them until the commit: a claim of an event whose inbox row is being deleted
    waits on that row, any other on the projection's lock."""
    engine = create_async_engine(database_url_)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"SET LOCAL lock_timeout = '{REBUILD_LOCK_TIMEOUT}'"))
            if tables:
                names = ", ".join(f'"{table}"' for table in tables)
                await conn.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
            for table in tables:
                await conn.execute(text(f'DELETE FROM "{table}"'))
            # Apart from the events whose dead letters were acknowledged: read again, they stay handled.
            await conn.execute(text(inbox.CLEAR_SQL), {"group": group})
            # Refused by the broker while the group has a member: the transaction then rolls back.
            await asyncio.to_thread(reset_offsets)
        print(f"rebuild: emptied {', '.join(tables) or 'no tables'} and the inbox of {group}")
    finally:
        await engine.dispose()


def follow(group: str, topics: list[str], bootstrap: str, timeout: float) -> bool:
    """Print the group's lag per partition until it reaches zero (the consumers must be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plans = plan(group, topics, to_earliest=False, to_datetime=None, to_offset=0, bootstrap=bootstrap)
        lag = {f"{p.topic}[{p.partition}]": p.end - max(p.current, 0) for p in plans}
        print("lag " + "  ".join(f"{name}={value}" for name, value in lag.items()), flush=True)
        if all(value == 0 for value in lag.values()) and all(p.current >= 0 or p.end == 0 for p in plans):
            return True
        time.sleep(2)
    return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("group")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument(
        "--to-datetime", type=dt.datetime.fromisoformat, help="ISO 8601, e.g. 2026-11-25T10:00:00+00:00"
    )
    target.add_argument("--to-offset", type=int)
    parser.add_argument("--dry-run", action="store_true", help="show what would change per partition")
    parser.add_argument("--rebuild", action="store_true", help="empty the projection and the group's inbox first")
    parser.add_argument("--follow", action="store_true", help="print the lag until the group has caught up")
    parser.add_argument("--follow-timeout", type=float, default=600.0)
    parser.add_argument("--bootstrap", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    bootstrap = args.bootstrap or kafka_bootstrap()
    module = groups.find(args.group)
    topics = module.group.topics
    when = args.to_datetime
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    plans = plan(
        args.group,
        topics,
        to_earliest=args.to_earliest,
        to_datetime=when,
        to_offset=args.to_offset,
        bootstrap=bootstrap,
    )
    for p in plans:
        print(p.describe())
    if args.dry_run:
        print(
            "dry run: nothing changed" + (" (--rebuild would empty the projection and inbox)" if args.rebuild else "")
        )
        return 0
    members = live_members(AdminClient({"bootstrap.servers": bootstrap}), args.group)
    if members:
        print(f"refusing: group {args.group} has {members} live member(s); stop its consumers first", file=sys.stderr)
        return 2
    # A reset Kafka refuses leaves the projection as it was: with --rebuild the reset is the emptying
    # transaction's last step (emptied first and committed, a refused reset left it empty with the group
    # past every event).
    try:
        if args.rebuild:
            tables = tuple(getattr(module, "projection_tables", ()))
            asyncio.run(
                rebuild(args.group, groups.database_url(module), tables, lambda: reset(args.group, plans, bootstrap))
            )
        else:
            reset(args.group, plans, bootstrap)
    except (ResetRefused, KafkaException) as exc:
        print(f"refusing: {exc}; nothing emptied, run it again", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # Before the reset (a lock not granted): nothing changed. At the commit, after it: the offsets moved
        # and nothing was emptied, so the inbox makes the replay a no-op. Either way a second run rebuilds.
        print(f"refusing: the rebuild's transaction failed ({exc}); nothing emptied, run it again", file=sys.stderr)
        return 1
    print(f"offsets of {args.group} reset; start its consumers to replay")
    if args.follow:
        return 0 if follow(args.group, topics, bootstrap, args.follow_timeout) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
