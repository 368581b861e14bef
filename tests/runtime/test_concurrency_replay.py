"""Random completion orders of concurrent operations: whatever order results come in live,
the recorded history replays to the same decisions and outcome (pure machine, no I/O)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from riverrun import (
    CancellationError,
    NonDeterminismError,
    sleep,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.persistence import RunKey, StoredEvent
from riverrun.runtime._commands import ScheduleStep, StartChild, StartTimer, WaitSignal
from riverrun.runtime._events import EventType
from riverrun.runtime._machine import Cancelled, Completed, WorkflowMachine

from .replaying import RecordingMachine, new_machine, replay


@step()
async def work(i: int) -> int:
    return 2 * i


@workflow()
async def fan_in(n: int) -> list[int]:
    return list(await asyncio.gather(*(work(i) for i in range(n))))


@workflow()
async def mixed(n: int) -> list[Any]:
    results = await asyncio.gather(*(work(i) for i in range(n)))
    signal = asyncio.create_task(wait_for_signal("go"))
    timer = asyncio.create_task(sleep(60))
    done, pending = await asyncio.wait({signal, timer}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    winner = "signal" if signal in done else "timer"
    more: Any
    try:
        async with asyncio.timeout(30):
            more = await asyncio.gather(work(100), work(101))
    except TimeoutError:
        more = "timeout"
    first = asyncio.create_task(work(200))
    second = asyncio.create_task(work(201))
    done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    second.cancel()
    return [list(results), winner, more, sorted(t.result() for t in done)]


WORKFLOWS = [fan_in, mixed]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Simulator:
    """Plays the instance's part: records an event for a random live command at each turn."""

    def __init__(self, rnd: random.Random, signals: int) -> None:
        self.rnd = rnd
        self.signals = signals
        self.machine: RecordingMachine = new_machine(WORKFLOWS)
        self.events: list[StoredEvent] = []

    def record(self, type_: EventType, data: dict[str, Any]) -> None:
        sequence = len(self.events) + 1
        event = StoredEvent(
            key=RunKey(workflow_id="wf", run_id="run"),
            sequence=sequence,
            type=type_.value,
            timestamp=T0 + timedelta(seconds=sequence),
            data=data,
        )
        self.events.append(event)
        self.machine.apply(event)

    def actions(self) -> list[tuple[EventType, dict[str, Any]]]:
        found: list[tuple[EventType, dict[str, Any]]] = []
        for command in self.machine.commands.values():
            position = command.position
            if isinstance(command, ScheduleStep):
                name = command.definition.name
                if command.cancelling:
                    found.append((EventType.STEP_CANCELLED, {"position": position, "name": name}))
                else:
                    result = 2 * command.args[0]
                    found.append(
                        (
                            EventType.STEP_COMPLETED,
                            {"position": position, "name": name, "result": result},
                        )
                    )
            elif isinstance(command, StartTimer | WaitSignal):
                timer_id = f"t{position}"
                if isinstance(command, StartTimer) and command.cancelling:
                    found.append(
                        (EventType.TIMER_CANCELLED, {"position": position, "timer_id": timer_id})
                    )
                elif command.timer_id is None and (
                    isinstance(command, StartTimer) or command.timeout is not None
                ):
                    found.append(
                        (EventType.TIMER_STARTED, {"position": position, "timer_id": timer_id})
                    )
                elif command.timer_id is not None:
                    found.append((EventType.TIMER_FIRED, {"timer_id": command.timer_id}))
            elif isinstance(command, StartChild):  # pragma: no cover - no children here
                raise AssertionError(command)
        if self.signals:
            found.append((EventType.SIGNAL_RECEIVED, {"name": "go", "payload": "p"}))
        return found

    def run(self, name: str, *args: Any) -> None:
        self.record(EventType.WORKFLOW_STARTED, {"workflow_name": name, "args": list(args)})
        while self.machine.outcome is None:
            actions = self.actions()
            assert actions, "the workflow waits for nothing: a deadlock"
            type_, data = self.rnd.choice(actions)
            if type_ == EventType.SIGNAL_RECEIVED:
                self.signals -= 1
            self.record(type_, data)


def _replayed(sim: Simulator) -> WorkflowMachine:
    again = replay(WORKFLOWS, sim.events)
    assert again.issued == sim.machine.issued  # the same decisions, in the same order
    assert again.outcome == sim.machine.outcome
    return again


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8))
def test_fan_in_gives_the_same_result_in_any_completion_order(seed: int, n: int) -> None:
    sim = Simulator(random.Random(seed), signals=0)
    sim.run("fan_in", n)
    assert Completed(result=[2 * i for i in range(n)]) == sim.machine.outcome
    # the steps were issued together, in argument order, before any result came
    assert [p for p, _ in sim.machine.issued] == list(range(1, n + 1))
    _replayed(sim)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), signals=st.integers(0, 2))
def test_races_and_timeouts_replay_identically(seed: int, n: int, signals: int) -> None:
    sim = Simulator(random.Random(seed), signals=signals)
    sim.run("mixed", n)
    outcome = sim.machine.outcome
    assert isinstance(outcome, Completed)
    results, winner, more, last = outcome.result
    assert results == [2 * i for i in range(n)]
    assert winner in ("signal", "timer") and (signals or winner == "timer")
    assert more in ("timeout", [200, 202])
    assert last in ([400], [402], [400, 402])
    _replayed(sim)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 6), data=st.data())
def test_permuted_completions_of_a_fan_in_replay_to_the_same_result(
    seed: int, n: int, data: st.DataObject
) -> None:
    """A recorded history with its step completions permuted is still a valid history of the
    same workflow (the order only changes when each result arrives), with the same result."""
    sim = Simulator(random.Random(seed), signals=0)
    sim.run("fan_in", n)
    started, completions = sim.events[:1], sim.events[1:]
    assert all(e.type == EventType.STEP_COMPLETED for e in completions)
    permuted = data.draw(st.permutations(completions))
    events = [
        StoredEvent(key=e.key, sequence=i + 1, type=e.type, timestamp=e.timestamp, data=e.data)
        for i, e in enumerate(started + list(permuted))
    ]
    machine = replay(WORKFLOWS, events)
    assert Completed(result=[2 * i for i in range(n)]) == machine.outcome


def test_a_history_that_disagrees_with_the_code_names_the_operation() -> None:
    sim = Simulator(random.Random(1), signals=0)
    sim.run("fan_in", 3)
    events = list(sim.events)
    bad = events[1]
    events[1] = StoredEvent(
        key=bad.key,
        sequence=bad.sequence,
        type=bad.type,
        timestamp=bad.timestamp,
        data={**bad.data, "position": 9},
    )
    with pytest.raises(NonDeterminismError, match="position 9") as caught:
        replay(WORKFLOWS, events)
    assert "'work'" in str(caught.value)  # the operations in flight are named


@workflow()
async def cleans_up_inside_a_timeout() -> str:
    async with asyncio.timeout(100):
        try:
            await work(1)
        except CancellationError:
            await work(2)  # cleanup, still bounded by the timeout
            raise
    return "unreachable"


def test_a_cancel_request_leaves_a_timeout_armed_for_the_cleanup() -> None:
    sim = Simulator(random.Random(0), signals=0)
    sim.machine = new_machine([cleans_up_inside_a_timeout])
    sim.record(EventType.WORKFLOW_STARTED, {"workflow_name": "cleans_up_inside_a_timeout"})
    machine = sim.machine
    timer, first = machine.commands.values()
    assert isinstance(timer, StartTimer) and timer.handle is not None
    assert isinstance(first, ScheduleStep) and 2 == first.position
    sim.record(EventType.TIMER_STARTED, {"position": timer.position, "timer_id": "t1"})
    sim.record(EventType.CANCELLATION_REQUESTED, {"reason": "stop"})
    # the step in flight got the CancellationError; the timeout's timer did not
    assert [1, 3] == list(machine.commands)
    assert not timer.cancelling and "t1" in machine.timers
    sim.record(EventType.STEP_COMPLETED, {"position": 3, "name": "work", "result": 4})
    assert Cancelled(message="stop") == machine.outcome
    # the timer left armed when the run ended: its cancellation is recorded before the end
    assert {1: (EventType.TIMER_CANCELLED, {"position": 1, "timer_id": "t1"})} == machine.abandoned
    assert ["t1"] == machine.retired_timers
