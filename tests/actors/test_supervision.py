"""Supervision: strategies, restart intensity, backoff, escalation."""

from __future__ import annotations

import math

import anyio
import pytest

from riverrun._errors import EscalationError
from riverrun.actors import (
    Actor,
    ActorContext,
    ActorRef,
    ActorStatus,
    ActorSystem,
    Backoff,
    StrategyKind,
    SupervisorStrategy,
    equal_jitter,
)

from .conftest import NO_BACKOFF, Boom, Probe, Worker, one_for_one, spawn_child


async def crash(ref: ActorRef) -> None:
    """Make a ``Worker`` fail; the ask re-raises the failure here."""
    with pytest.raises(Boom):
        await ref.ask("boom")


async def supervisor_with_children(
    system: ActorSystem, probe: Probe, strategy: SupervisorStrategy, names: str
) -> tuple[ActorRef, list[ActorRef]]:
    parent = await system.spawn(lambda: Worker(probe), name="sup", supervisor=strategy)
    children = [await spawn_child(parent, name) for name in names]
    return parent, children


@pytest.mark.anyio
@pytest.mark.parametrize("max_restarts", [0, 1, 3])
async def test_n_failures_restart_and_failure_n_plus_1_escalates(max_restarts: int) -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one(max_restarts=5)) as system:
        parent, (child,) = await supervisor_with_children(
            system, probe, one_for_one(max_restarts=max_restarts), "c"
        )
        for n in range(1, max_restarts + 1):
            await crash(child)
            await probe.wait_count("start", n + 1, "sup/c")
            assert n == child.statistics().restarts
            assert 0 == parent.statistics().restarts
        await crash(child)  # failure N+1
        await child.wait_stopped()
        await probe.wait_for(lambda p: p.of("start").count("sup") == 2)
        assert ActorStatus.STOPPED == child.status
        assert max_restarts == child.statistics().restarts
        assert max_restarts + 1 == child.statistics().failures
        # The parent failed with an EscalationError and its own supervisor restarted it.
        assert (1, 1) == (parent.statistics().restarts, parent.statistics().failures)
        assert () == parent.children
        assert () == system.failures


@pytest.mark.anyio
async def test_an_escalation_reaching_the_root_raises_out_of_the_system() -> None:
    probe = Probe()
    with pytest.RaisesGroup(pytest.RaisesExc(EscalationError)) as info:
        async with ActorSystem(strategy=one_for_one(max_restarts=1)) as system:
            ref = await system.spawn(lambda: Worker(probe), name="top")
            await crash(ref)
            await crash(ref)
            await anyio.sleep_forever()  # cancelled by the escalation
    (error,) = info.value.exceptions
    assert isinstance(error.__cause__, Boom)
    assert (error,) == system.failures
    assert probe.of("stop") == ["top", "top"]


@pytest.mark.anyio
async def test_a_root_handler_takes_escalations_and_the_system_goes_on() -> None:
    probe = Probe()
    handled: list[EscalationError] = []
    async with ActorSystem(
        strategy=one_for_one(max_restarts=0), on_escalation=handled.append
    ) as system:
        doomed = await system.spawn(lambda: Worker(probe), name="doomed")
        other = await system.spawn(lambda: Worker(probe), name="other")
        await crash(doomed)
        await doomed.wait_stopped()
        assert "still here" == await other.ask("still here")
    assert 1 == len(handled)
    assert tuple(handled) == system.failures


@pytest.mark.anyio
async def test_an_escalation_fails_the_supervisor_and_its_parent_restarts_it() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one(max_restarts=3)) as system:
        top = await system.spawn(
            lambda: Worker(probe), name="top", supervisor=one_for_one(max_restarts=3)
        )
        mid = await spawn_child(top, "mid")  # supervised by top, mid's own strategy default
        leaf = await spawn_child(mid, "leaf")
        for _ in range(4):  # mid's strategy (the system's default here) allows 3
            await crash(leaf)
        await leaf.wait_stopped()
        # mid failed with an EscalationError; top restarted it, without its old children.
        await probe.wait_for(lambda p: p.of("start").count("top/mid") == 2)
        assert (1, 1) == (mid.statistics().restarts, mid.statistics().failures)
        assert () == mid.children
        assert (0, 0) == (top.statistics().restarts, top.statistics().failures)
        assert (mid,) == top.children


@pytest.mark.anyio
async def test_one_for_all_restarts_every_sibling() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one()) as system:
        strategy = SupervisorStrategy.one_for_all(max_restarts=3, within=60, backoff=NO_BACKOFF)
        _, children = await supervisor_with_children(system, probe, strategy, "abc")
        await crash(children[1])
        await probe.wait_for(lambda p: len(p.of("start")) == 1 + 3 + 3)
        assert ["sup/a", "sup/b", "sup/c"] == probe.of("start")[-3:]
        assert [1, 1, 1] == [c.statistics().restarts for c in children]
        assert [0, 1, 0] == [c.statistics().failures for c in children]
        assert {"sup/a", "sup/b", "sup/c"} == set(probe.of("stop"))


@pytest.mark.anyio
async def test_rest_for_one_restarts_the_failed_child_and_later_siblings() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one()) as system:
        strategy = SupervisorStrategy.rest_for_one(max_restarts=3, within=60, backoff=NO_BACKOFF)
        _, children = await supervisor_with_children(system, probe, strategy, "abcd")
        await crash(children[1])
        await probe.wait_for(lambda p: len(p.of("start")) == 1 + 4 + 3)
        assert ["sup/b", "sup/c", "sup/d"] == probe.of("start")[-3:]
        assert [0, 1, 1, 1] == [c.statistics().restarts for c in children]
        assert ["sup/d", "sup/c", "sup/b"] == sorted(probe.of("stop"), reverse=True)
        assert "a" == await children[0].ask("a")


@pytest.mark.anyio
async def test_siblings_of_a_one_for_one_failure_are_untouched() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one()) as system:
        _, children = await supervisor_with_children(system, probe, one_for_one(), "abc")
        await crash(children[0])
        await probe.wait_for(lambda p: len(p.of("start")) == 1 + 3 + 1)
        assert [1, 0, 0] == [c.statistics().restarts for c in children]


@pytest.mark.anyio
async def test_restarting_a_child_stops_its_own_children() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one()) as system:
        parent = await system.spawn(lambda: Worker(probe), name="p")
        grandchild = await spawn_child(await spawn_child(parent, "c"), "g")
        await crash(system.lookup("p/c"))
        await probe.wait_for(lambda p: p.of("start").count("p/c") == 2)
        assert ActorStatus.STOPPED == grandchild.status
        assert ["p/c/g", "p/c"] == probe.of("stop")


def test_backoff_grows_exponentially_up_to_its_maximum() -> None:
    backoff = Backoff(base=0.1, maximum=1.0, multiplier=2.0, jitter=lambda d: d)
    delays = [backoff.delay(n) for n in range(1, 7)]
    assert [0.1, 0.2, 0.4, 0.8, 1.0, 1.0] == pytest.approx(delays)
    assert 0.0 == Backoff(base=0).delay(10)
    assert math.isfinite(backoff.delay(10_000))
    for delay in (0.1, 1.0, 5.0):
        assert delay / 2 <= equal_jitter(delay) <= delay


def test_strategies_validate_their_arguments() -> None:
    assert StrategyKind.REST_FOR_ONE == SupervisorStrategy.rest_for_one().kind
    with pytest.raises(ValueError):
        SupervisorStrategy.one_for_one(max_restarts=-1)
    with pytest.raises(ValueError):
        SupervisorStrategy.one_for_all(within=0)
    with pytest.raises(ValueError):
        Backoff(base=-1)
    with pytest.raises(ValueError):
        Backoff(multiplier=0.5)


@pytest.mark.anyio
async def test_restarts_wait_for_the_backoff_with_injected_jitter() -> None:
    asked: list[float] = []

    def jitter(delay: float) -> float:
        asked.append(delay)
        return 0.0  # never sleep in tests

    backoff = Backoff(base=0.5, maximum=1.5, jitter=jitter)
    probe = Probe()
    strategy = SupervisorStrategy.one_for_one(max_restarts=4, within=60, backoff=backoff)
    async with ActorSystem(strategy=strategy) as system:
        ref = await system.spawn(lambda: Worker(probe), name="w")
        for n in range(1, 5):
            await crash(ref)
            await probe.wait_count("start", n + 1)
    assert [0.5, 1.0, 1.5, 1.5] == asked


@pytest.mark.anyio
async def test_failures_older_than_the_window_do_not_count() -> None:
    now = [0.0]
    probe = Probe()
    handled: list[EscalationError] = []
    strategy = one_for_one(max_restarts=1, within=10.0)
    async with ActorSystem(
        strategy=strategy, clock=lambda: now[0], on_escalation=handled.append
    ) as system:
        ref = await system.spawn(lambda: Worker(probe), name="w")
        await crash(ref)
        await probe.wait_for(lambda p: len(p.of("start")) == 2)
        now[0] = 20.0  # the first failure has left the window
        await crash(ref)
        await probe.wait_for(lambda p: len(p.of("start")) == 3)
        now[0] = 21.0
        await crash(ref)  # second failure within 10 s: one too many
        await ref.wait_stopped()
    assert 1 == len(handled)


class Flaky(Actor):
    """Fails in the hook named by ``where`` on its first incarnation only."""

    def __init__(self, probe: Probe, where: str, background: anyio.Event) -> None:
        self.probe = probe
        self.where = where
        self.background = background

    async def on_start(self, ctx: ActorContext) -> None:
        self.probe.record("start", ctx.path)
        if ctx.restarts == 0 and self.where == "on_start":
            raise Boom("on_start")
        if ctx.restarts == 0 and self.where == "task":
            ctx.start_soon(self._fail_later)

    async def _fail_later(self) -> None:
        await self.background.wait()
        raise Boom("background")

    async def receive(self, ctx: ActorContext, message: object) -> object:
        return message


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["on_start", "task", "factory"])
async def test_failures_outside_receive_are_supervised_too(where: str) -> None:
    probe = Probe()
    background = anyio.Event()
    built = [0]

    def factory() -> Actor:
        built[0] += 1
        if where == "factory" and built[0] == 1:
            raise Boom("factory")
        return Flaky(probe, where, background)

    async with ActorSystem(strategy=one_for_one()) as system:
        ref = await system.spawn(factory, name="f")
        background.set()
        starts = 1 if where == "factory" else 2  # a failed factory built no actor
        await probe.wait_for(lambda p: len(p.of("start")) == starts)
        assert "ok" == await ref.ask("ok")
        assert (1, 1) == (ref.statistics().restarts, ref.statistics().failures)
