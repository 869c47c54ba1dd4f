"""The committed event catalogue (docs/events) matches the registered schemas and breaks no rule."""

from __future__ import annotations

from outbox import catalogue


def test_committed_catalogue_matches_the_code_and_its_versioning_rules() -> None:
    # Fails when a schema changed without a version bump, a version was removed, a new version is not
    # readable by the previous one's consumers, or someone forgot `python -m outbox.catalogue write`.
    assert catalogue.main(["check"]) == 0
