"""A property test of the supervision tree under random spawns, failures and stops.

Each example builds a fresh system (one strategy for every supervisor), applies a random
list of operations, and after each one lets the system settle (waiting on lifecycle events,
never sleeping) and checks the real tree against a small model:

* the live actors are exactly the model's, and every live actor's parent is live;
* a stopped actor has no live descendants;
* restart and failure counts match the failures injected (collateral restarts included);
* escalations reaching the root match the model's.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import attrs
from hypothesis import given, settings, strategies as st

from riverrun._errors import EscalationError
from riverrun.actors import (
    ActorRef,
    ActorStatus,
    ActorSystem,
    StrategyKind,
    SupervisorStrategy,
)

from .conftest import NO_BACKOFF, Probe, Worker, spawn_child


@attrs.define(eq=False)
class Node:
    """The model of one actor."""

    ref: ActorRef
    parent: Node | None
    alive: bool = True
    restarts: int = 0
    failures: int = 0
    children: list[Node] = attrs.Factory(list)

    def subtree(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.subtree()


@attrs.define
class Model:
    strategy: SupervisorStrategy
    top: list[Node] = attrs.Factory(list)
    nodes: list[Node] = attrs.Factory(list)
    escalations: int = 0

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def siblings(self, node: Node) -> list[Node]:
        return self.top if node.parent is None else node.parent.children

    def kill(self, node: Node, *, keep_root: bool = False) -> list[Node]:
        """Stop ``node``'s subtree (all but ``node`` with ``keep_root``); return the dead."""
        dead = [n for n in node.subtree() if n is not node or not keep_root]
        for n in dead:
            n.alive = False
        if keep_root:
            node.children.clear()
        else:
            self.siblings(node).remove(node)
        return dead

    def fail(self, node: Node) -> tuple[list[Node], list[Node]]:
        """Apply a failure of ``node``; return ``(dead, restarted)``."""
        node.failures += 1
        if node.failures > self.strategy.max_restarts:
            dead = self.kill(node)
            if node.parent is None:
                self.escalations += 1
                return dead, []
            more_dead, restarted = self.fail(node.parent)
            return dead + more_dead, restarted
        siblings = self.siblings(node)
        affected = self.strategy.affected(siblings, node)
        dead = []
        for member in affected:
            dead += self.kill(member, keep_root=True)
            member.restarts += 1
        return dead, affected


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["spawn", "spawn", "fail", "fail", "stop"]), st.integers(0, 1000)),
    min_size=4,
    max_size=25,
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(StrategyKind),
    max_restarts=st.integers(0, 3),
    operations=OPERATIONS,
)
def test_the_supervision_tree_keeps_its_invariants(
    kind: StrategyKind, max_restarts: int, operations: list[tuple[str, int]]
) -> None:
    strategy = SupervisorStrategy(
        kind=kind, max_restarts=max_restarts, within=3600, backoff=NO_BACKOFF
    )
    anyio.run(run_scenario, strategy, operations, backend="asyncio")


async def run_scenario(strategy: SupervisorStrategy, operations: list[tuple[str, int]]) -> None:
    model = Model(strategy=strategy)
    probe = Probe()
    escalations: list[EscalationError] = []
    async with ActorSystem(strategy=strategy, on_escalation=escalations.append) as system:
        for number, (operation, pick) in enumerate(operations):
            live = model.live()
            if operation == "spawn":
                parent = None if pick % (len(live) + 1) == 0 else live[pick % (len(live) + 1) - 1]
                await spawn(system, model, probe, parent, f"n{number}")
            elif live and operation == "fail":
                await fail(model, probe, live[pick % len(live)])
            elif live and operation == "stop":
                target = live[pick % len(live)]
                await target.ref.stop()
                model.kill(target)
            check(system, model, escalations)


async def spawn(
    system: ActorSystem, model: Model, probe: Probe, parent: Node | None, name: str
) -> None:
    if parent is None:
        ref = await system.spawn(lambda: Worker(probe), name=name)
    else:
        ref = await spawn_child(parent.ref, name)
    await ref.ask("sync")  # on_start has run
    node = Node(ref=ref, parent=parent)
    model.nodes.append(node)
    model.siblings(node).append(node)


async def fail(model: Model, probe: Probe, target: Node) -> None:
    await target.ref.tell("boom")
    dead, restarted = model.fail(target)
    with anyio.fail_after(10):
        for node in dead:
            await node.ref.wait_stopped()
    for node in restarted:
        await probe.wait_count("start", node.restarts + 1, node.ref.path)


def real_tree(system: ActorSystem) -> Iterator[ActorRef]:
    stack = list(system.children)
    while stack:
        ref = stack.pop()
        yield ref
        stack.extend(ref.children)


def check(system: ActorSystem, model: Model, escalations: list[EscalationError]) -> None:
    live = {node.ref: node for node in model.live()}
    real = list(real_tree(system))
    assert set(live) == set(real)
    assert len(live) == len(system)
    for ref in real:
        assert ActorStatus.RUNNING == ref.status
        parent = ref.parent
        assert parent is None or parent.status is ActorStatus.RUNNING
        node = live[ref]
        assert (node.parent.ref if node.parent else None) is parent
        stats = ref.statistics()
        assert (node.restarts, node.failures) == (stats.restarts, stats.failures)
    for node in model.nodes:
        if not node.alive:
            assert ActorStatus.STOPPED == node.ref.status
            assert () == node.ref.children
    assert model.escalations == len(escalations) == len(system.failures)
