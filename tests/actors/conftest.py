"""Shared helpers for the actor kernel tests."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from riverrun.actors import Actor, ActorContext, ActorRef, Backoff, SupervisorStrategy

# Backoff of zero: tests never sleep for a restart.
NO_BACKOFF = Backoff(base=0.0)


def one_for_one(max_restarts: int = 3, within: float = 60.0) -> SupervisorStrategy:
    return SupervisorStrategy.one_for_one(
        max_restarts=max_restarts, within=within, backoff=NO_BACKOFF
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Boom(Exception):
    """The failure tests inject."""


class Probe:
    """Records lifecycle events from actors; lets a test wait for one without sleeping."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._changed = anyio.Event()

    def record(self, kind: str, path: str) -> None:
        self.events.append((kind, path))
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def of(self, kind: str) -> list[str]:
        return [path for k, path in self.events if k == kind]

    async def wait_count(self, kind: str, count: int, path: str | None = None) -> None:
        """Wait until ``count`` events of ``kind`` (for ``path``, if given) were recorded."""

        def reached(probe: Probe) -> bool:
            paths = probe.of(kind)
            return count == (len(paths) if path is None else paths.count(path))

        await self.wait_for(reached)

    async def wait_for(self, predicate: Callable[[Probe], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate(self):
                await self._changed.wait()


class Worker(Actor):
    """A well-behaved test actor: records its life, echoes, fails on ``"boom"``.

    Messages: ``"boom"`` raises :class:`Boom`; ``("spawn", name)`` spawns a ``Worker``
    child; ``("sleep", seconds)`` sleeps; ``"stop"`` calls ``ctx.stop()``; anything else is
    echoed back.
    """

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def on_start(self, ctx: ActorContext) -> None:
        self.probe.record("start", ctx.path)

    async def receive(self, ctx: ActorContext, message: object) -> object:
        self.probe.record("message", ctx.path)
        match message:
            case "boom":
                raise Boom(ctx.path)
            case ("spawn", str(name)):
                return await ctx.spawn(lambda: Worker(self.probe), name=name)
            case ("sleep", float(seconds)):
                await anyio.sleep(seconds)
            case "stop":
                ctx.stop()
        return message

    async def on_stop(self, ctx: ActorContext) -> None:
        self.probe.record("stop", ctx.path)


async def spawn_child(parent: ActorRef, name: str) -> ActorRef:
    """Ask a :class:`Worker` to spawn a ``Worker`` child; return the child's ref."""
    child = await parent.ask(("spawn", name))
    assert isinstance(child, ActorRef)
    return child
