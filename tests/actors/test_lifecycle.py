"""Stopping, cancellation order, grace periods, watch/Terminated, background tasks."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from riverrun._errors import ActorStopped, EscalationError
from riverrun.actors import (
    Actor,
    ActorContext,
    ActorRef,
    ActorStatus,
    ActorSystem,
    Terminated,
)

from .conftest import Boom, Probe, Worker, one_for_one, spawn_child


class Tree(Actor):
    """Spawns ``fanout`` children in ``on_start`` while ``depth`` > 0."""

    def __init__(self, probe: Probe, depth: int, fanout: int) -> None:
        self.probe, self.depth, self.fanout = probe, depth, fanout

    async def on_start(self, ctx: ActorContext) -> None:
        for i in range(self.fanout if self.depth else 0):
            await ctx.spawn(lambda: Tree(self.probe, self.depth - 1, self.fanout), name=str(i))
        self.probe.record("start", ctx.path)

    async def receive(self, ctx: ActorContext, message: object) -> object:
        return message

    async def on_stop(self, ctx: ActorContext) -> None:
        await anyio.lowlevel.checkpoint()  # a real await, under the shield
        self.probe.record("stop", ctx.path)


def assert_children_stopped_first(stops: list[str]) -> None:
    position = {path: i for i, path in enumerate(stops)}
    assert len(position) == len(stops), "an actor stopped twice"
    for path, i in position.items():
        if "/" in path:
            parent = path.rsplit("/", 1)[0]
            assert i < position[parent], f"{parent} stopped before its child {path}"


@pytest.mark.anyio
async def test_stopping_the_root_of_1000_actors_stops_all_children_first() -> None:
    probe = Probe()
    total = 1 + 10 + 100 + 1000
    async with ActorSystem() as system:
        tasks_before = len(asyncio.all_tasks())
        root = await system.spawn(lambda: Tree(probe, 3, 10), name="root")
        await probe.wait_for(lambda p: len(p.events) == total)
        assert total == len(system)
        assert len(asyncio.all_tasks()) > tasks_before + total - 1
        await root.stop()
        assert tasks_before == len(asyncio.all_tasks())
        assert 0 == len(system)
    stops = probe.of("stop")
    assert total == len(stops)
    assert "root" == stops[-1]
    assert_children_stopped_first(stops)


@pytest.mark.anyio
async def test_leaving_the_system_stops_everything_children_first() -> None:
    probe = Probe()
    tasks_before = len(asyncio.all_tasks())
    async with ActorSystem() as system:
        for name in "ab":
            await system.spawn(lambda: Tree(probe, 2, 3), name=name)
        await probe.wait_for(lambda p: len(p.events) == 2 * 13)
    assert tasks_before == len(asyncio.all_tasks())
    stops = probe.of("stop")
    assert 2 * 13 == len(stops)
    assert_children_stopped_first(stops)


@pytest.mark.anyio
async def test_cancelling_the_system_from_outside_still_stops_children_first() -> None:
    probe = Probe()
    tasks_before = len(asyncio.all_tasks())
    with anyio.CancelScope() as scope:
        async with ActorSystem() as system:
            await system.spawn(lambda: Tree(probe, 2, 3), name="t")
            await probe.wait_for(lambda p: len(p.events) == 13)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert tasks_before == len(asyncio.all_tasks())
    stops = probe.of("stop")
    assert 13 == len(stops)
    assert_children_stopped_first(stops)


class Slow(Actor):
    """Handles a message by waiting on ``release``; records how the message ended."""

    def __init__(self, probe: Probe, release: anyio.Event, stop_release: anyio.Event) -> None:
        self.probe, self.release, self.stop_release = probe, release, stop_release

    async def receive(self, ctx: ActorContext, message: object) -> object:
        self.probe.record("busy", ctx.path)
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.probe.record("cancelled", ctx.path)
            raise
        self.probe.record("finished", ctx.path)
        return message

    async def on_stop(self, ctx: ActorContext) -> None:
        try:
            await self.stop_release.wait()
        finally:
            self.probe.record("stop", ctx.path)


@pytest.mark.anyio
async def test_a_stopping_actor_may_finish_its_message_within_the_grace_period() -> None:
    probe, release, stop_release = Probe(), anyio.Event(), anyio.Event()
    stop_release.set()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Slow(probe, release, stop_release), grace=30)
        await ref.tell("work")
        await probe.wait_for(lambda p: "busy" in dict(p.events))
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.stop)
            await anyio.wait_all_tasks_blocked()
            assert ActorStatus.STOPPING == ref.status
            release.set()
    assert ["busy", "finished", "stop"] == [kind for kind, _ in probe.events]


@pytest.mark.anyio
async def test_after_the_grace_period_the_message_and_on_stop_are_cancelled() -> None:
    probe, never = Probe(), anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Slow(probe, never, never), grace=0.01)
        await ref.tell("work")
        await probe.wait_for(lambda p: "busy" in dict(p.events))
        await ref.stop()
        assert ActorStatus.STOPPED == ref.status
    assert ["busy", "cancelled", "stop"] == [kind for kind, _ in probe.events]


@pytest.mark.anyio
async def test_stop_with_an_explicit_grace_overrides_the_spawn_grace() -> None:
    probe, never = Probe(), anyio.Event()
    async with ActorSystem(grace=0) as system:
        ref = await system.spawn(lambda: Slow(probe, never, never), grace=3600)
        await ref.tell("work")
        await probe.wait_for(lambda p: "busy" in dict(p.events))
        with anyio.fail_after(10):  # a hang would be a bug, not slowness
            await ref.stop(grace=0)
    assert ["busy", "cancelled", "stop"] == [kind for kind, _ in probe.events]


class Watcher(Actor):
    """Watches refs sent to it; records every ``Terminated``."""

    def __init__(self, seen: list[Terminated], got: anyio.Event) -> None:
        self.seen, self.got = seen, got

    async def receive(self, ctx: ActorContext, message: object) -> object:
        if isinstance(message, ActorRef):
            ctx.watch(message)
        elif isinstance(message, Terminated):
            self.seen.append(message)
            self.got.set()
        return None


@pytest.mark.anyio
async def test_watch_delivers_terminated_with_no_cause_for_a_normal_stop() -> None:
    seen: list[Terminated] = []
    got = anyio.Event()
    async with ActorSystem() as system:
        watcher = await system.spawn(lambda: Watcher(seen, got))
        watched = await system.spawn(lambda: Worker(Probe()))
        await watcher.ask(watched)
        await watched.stop()
        await got.wait()
    assert [Terminated(ref=watched, cause=None)] == seen


@pytest.mark.anyio
async def test_watch_delivers_the_failure_a_supervisor_gave_up_on() -> None:
    seen: list[Terminated] = []
    got = anyio.Event()
    errors: list[EscalationError] = []
    async with ActorSystem(
        strategy=one_for_one(max_restarts=0), on_escalation=errors.append
    ) as system:
        watcher = await system.spawn(lambda: Watcher(seen, got))
        watched = await system.spawn(lambda: Worker(Probe()))
        await watcher.ask(watched)
        await watched.tell("boom")
        await got.wait()
    (terminated,) = seen
    assert watched is terminated.ref
    assert isinstance(terminated.cause, Boom)
    assert errors[0].__cause__ is terminated.cause


@pytest.mark.anyio
async def test_watching_a_stopped_actor_delivers_terminated_at_once() -> None:
    seen: list[Terminated] = []
    got = anyio.Event()
    async with ActorSystem() as system:
        watched = await system.spawn(lambda: Worker(Probe()))
        await watched.stop()
        watcher = await system.spawn(lambda: Watcher(seen, got))
        await watcher.ask(watched)
        await got.wait()
    assert [Terminated(ref=watched, cause=None)] == seen


@pytest.mark.anyio
async def test_a_parent_watching_its_children_learns_of_each_end() -> None:
    seen: list[Terminated] = []
    got = anyio.Event()

    class Parent(Watcher):
        async def on_start(self, ctx: ActorContext) -> None:
            for name in "ab":
                ctx.watch(await ctx.spawn(lambda: Worker(Probe()), name=name))

    async with ActorSystem() as system:
        parent = await system.spawn(lambda: Parent(seen, got), name="p")
        await parent.ask("sync")  # on_start has run
        a, b = parent.children
        await a.stop()
        await got.wait()
        assert [Terminated(ref=a, cause=None)] == seen
        assert (b,) == parent.children


@pytest.mark.anyio
async def test_ctx_stop_stops_after_the_current_message() -> None:
    probe = Probe()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Worker(probe), name="w")
        assert "stop" == await ref.ask("stop")
        await ref.wait_stopped()
    assert ["start", "message", "stop"] == [kind for kind, _ in probe.events]


class Busy(Actor):
    """Runs background tasks; can try to stop itself the wrong way, or spawn late."""

    def __init__(self, probe: Probe, release: anyio.Event) -> None:
        self.probe, self.release = probe, release

    async def on_start(self, ctx: ActorContext) -> None:
        ctx.start_soon(self._forever, ctx.path, name="forever")

    async def _forever(self, path: str) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            self.probe.record("task cancelled", path)

    async def receive(self, ctx: ActorContext, message: object) -> object:
        if message == "stop yourself badly":
            await ctx.self_ref.stop()
        return message

    async def on_stop(self, ctx: ActorContext) -> None:
        self.probe.record("stop", ctx.path)
        try:
            await ctx.spawn(lambda: Worker(self.probe))
        except ActorStopped:
            self.probe.record("spawn refused", ctx.path)
        try:
            ctx.start_soon(anyio.sleep, 1)
        except ActorStopped:
            self.probe.record("task refused", ctx.path)


@pytest.mark.anyio
async def test_background_tasks_end_before_on_stop_and_stopping_actors_refuse_work() -> None:
    probe = Probe()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Busy(probe, anyio.Event()), name="b")
        await ref.ask("sync")
        await ref.stop()
    assert ["task cancelled", "stop", "spawn refused", "task refused"] == [
        kind for kind, _ in probe.events
    ]


@pytest.mark.anyio
async def test_an_actor_cannot_await_its_own_stop() -> None:
    async with ActorSystem(strategy=one_for_one()) as system:
        ref = await system.spawn(lambda: Busy(Probe(), anyio.Event()))
        with pytest.raises(RuntimeError, match=r"ctx\.stop"):
            await ref.ask("stop yourself badly")


@pytest.mark.anyio
async def test_stopping_a_child_leaves_its_parent_and_siblings_running() -> None:
    probe = Probe()
    async with ActorSystem() as system:
        parent = await system.spawn(lambda: Worker(probe), name="p")
        a = await spawn_child(parent, "a")
        b = await spawn_child(parent, "b")
        await a.stop()
        assert (b,) == parent.children
        assert "still" == await b.ask("still")
        assert ActorStatus.RUNNING == parent.status
