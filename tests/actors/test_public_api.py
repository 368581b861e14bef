"""The public names of riverrun.actors: frozen, sorted, and all present."""

from __future__ import annotations

import riverrun.actors

FROZEN = [
    "Actor",
    "ActorContext",
    "ActorRef",
    "ActorStatistics",
    "ActorStatus",
    "ActorSystem",
    "Backoff",
    "MailboxStatistics",
    "StrategyKind",
    "SupervisorStrategy",
    "Terminated",
    "equal_jitter",
]


def test_all_is_frozen_and_sorted() -> None:
    assert FROZEN == riverrun.actors.__all__
    assert sorted(FROZEN) == FROZEN


def test_every_name_is_exported_from_a_private_module() -> None:
    for name in FROZEN:
        value = getattr(riverrun.actors, name)
        assert value.__module__.startswith("riverrun.actors._"), name
