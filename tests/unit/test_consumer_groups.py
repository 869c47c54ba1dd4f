"""Every consumer group is found by the operator commands, wherever its module lives, and mapped to the
stack component that runs it (replay's --restart and the PITR runbook stop and start those)."""

from __future__ import annotations

from apps.common.topology import PROCESSES
from infra import pitr, replay, stack
from outbox import groups
from outbox.consumer import ConsumerGroup


def test_every_group_the_stack_runs_is_discovered_once() -> None:
    names = [module.group.name for module in groups.consumer_modules()]
    assert len(names) == len(set(names)), names
    assert {"customer-stats", "order-saga", "order-references"} <= set(names)
    assert all(isinstance(module.group, ConsumerGroup) for module in groups.consumer_modules())


def test_each_group_maps_to_a_component_of_the_stack() -> None:
    components = set(stack.components())
    for module in groups.consumer_modules():
        assert set(replay.consumer_components(module.group.name)) <= components, module.__name__
    assert replay.consumer_components("customer-stats") == ["customer-consumer"]
    assert replay.consumer_components("order-references") == ["order-references"]


def test_pitr_stops_every_process_that_consumes_including_the_ones_of_their_own() -> None:
    own = {p.name for p in PROCESSES if p.module in {m.__name__ for m in groups.consumer_modules()}}
    assert own and own <= set(pitr.consumer_components())
