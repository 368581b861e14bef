"""Supervision is logged: every restart (WARNING), escalation and stop by failure (ERROR)."""

from __future__ import annotations

import logging

import pytest

from riverrun.actors import ActorStatus, ActorSystem, Backoff, SupervisorStrategy

from .conftest import Boom, Probe, Worker, one_for_one, spawn_child

pytestmark = pytest.mark.anyio


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "riverrun.actors" and r.levelno == level]


async def test_each_restart_is_logged_with_name_attempt_delay_and_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="riverrun.actors")
    probe = Probe()
    strategy = SupervisorStrategy.one_for_one(
        max_restarts=5, within=60.0, backoff=Backoff(base=0.001, maximum=0.001, jitter=lambda d: d)
    )
    async with ActorSystem(strategy=strategy) as system:
        ref = await system.spawn(lambda: Worker(probe), name="flaky")
        for n in (1, 2):
            with pytest.raises(Boom):
                await ref.ask("boom")
            await probe.wait_count("start", n + 1, "flaky")
    warnings = records(caplog, logging.WARNING)
    assert [r.getMessage() for r in warnings] == [
        "actor flaky failed (attempt 1 within 60.0s), restarting in 0.001s: Boom: flaky",
        "actor flaky failed (attempt 2 within 60.0s), restarting in 0.001s: Boom: flaky",
    ]
    assert records(caplog, logging.ERROR) == []


async def test_an_escalation_and_the_stop_it_causes_are_logged_as_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="riverrun.actors")
    probe = Probe()
    async with ActorSystem(strategy=one_for_one(max_restarts=5)) as system:
        parent = await system.spawn(
            lambda: Worker(probe), name="sup", supervisor=one_for_one(max_restarts=0)
        )
        child = await spawn_child(parent, "c")
        with pytest.raises(Boom):
            await child.ask("boom")
        await child.wait_stopped()
        await probe.wait_for(lambda p: p.of("start").count("sup") == 2)
        assert child.status == ActorStatus.STOPPED
    errors = [r.getMessage() for r in records(caplog, logging.ERROR)]
    assert errors[0].startswith(
        "actor sup/c failed 1 times within 60.0s (max_restarts=0), escalating to sup: Boom: sup/c"
    )
    assert "actor sup/c stopped by a failure (after 0 restarts): Boom: sup/c" in errors
    # the supervisor failed with the escalation and its own supervisor restarted it
    warnings = [r.getMessage() for r in records(caplog, logging.WARNING)]
    assert len(warnings) == 1 and warnings[0].startswith("actor sup failed (attempt 1")
    assert "EscalationError" in warnings[0]
    assert all(r.exc_info for r in records(caplog, logging.ERROR))
