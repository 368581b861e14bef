"""Store round trips per workflow, counted by wrapping the store.

Memory: every call of the backend's protocols (event log, run store, inbox) is one round
trip. JetStream: every request and publish on the backend's NATS connection is one (counted on
the connection's own request path and on nats-py's).
Lease operations are counted apart and left out of the budget: ownership is by per-partition
leases and worker membership (renewed per partition and per worker, not per workflow). The
per-partition index of running chains is per workflow, and counted.

The budget is on the critical path: round trips the caller waits for one after another.
Round trips in flight at the same time (two writes done concurrently) cost one wait, so the
critical path is the number of times the store goes from idle to busy.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

from riverrun import RunStatus, Runtime, step, workflow
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

#: a 5-step workflow, from ``client.start`` to ``handle.result()``
BUDGET = 9


@step()
async def inc(x: int) -> int:
    return x + 1


@workflow()
async def five_steps(x: int) -> int:
    for _ in range(5):
        x = await inc(x)
    return x


@attrs.define
class RoundTrips:
    calls: collections.Counter[str] = attrs.field(factory=collections.Counter)
    leases: collections.Counter[str] = attrs.field(factory=collections.Counter)
    order: list[str] = attrs.field(factory=list)
    waits: int = 0
    #: ``waits`` when the worker announced the chain's end to the waiting handle
    announced_at: int | None = None
    in_flight: int = 0
    on: bool = False

    def begin(self, name: str) -> bool:
        if not self.on:
            return False
        if "lease" in name.lower():
            self.leases[name] += 1
            return False
        self.calls[name] += 1
        if self.in_flight == 0:
            self.waits += 1
            self.order.append(name)
        else:
            self.order.append(f"({name})")
        self.in_flight += 1
        return True

    @property
    def critical(self) -> int:
        return self.waits if self.announced_at is None else self.announced_at

    def end(self) -> None:
        self.in_flight -= 1

    def report(self) -> str:
        lines = [
            f"critical path: {self.critical} waits before the result was announced "
            f"(budget {BUDGET}); {self.waits} waits and {sum(self.calls.values())} round trips "
            "in all (with the projections written after it)",
            "in order ('(x)': concurrent with the one before): " + ", ".join(self.order),
            "by operation: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.calls.items())),
            "lease operations (not counted): "
            + (", ".join(f"{k} x{v}" for k, v in sorted(self.leases.items())) or "none"),
        ]
        return "\n".join(lines)


def _wrap_method(counter: RoundTrips, owner: Any, attr: str, name: str) -> None:
    original = getattr(owner, attr)
    if inspect.isasyncgenfunction(original):

        @functools.wraps(original)
        async def gen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            counted = counter.begin(name)
            try:
                async for item in original(*args, **kwargs):
                    yield item
            finally:
                if counted:
                    counter.end()

        setattr(owner, attr, gen)
        return

    @functools.wraps(original)
    async def call(*args: Any, **kwargs: Any) -> Any:
        counted = counter.begin(name)
        try:
            return await original(*args, **kwargs)
        finally:
            if counted:
                counter.end()

    setattr(owner, attr, call)


_MEMORY_OPS = {
    "events": ("append", "append_atomic", "read", "stream", "last_sequence", "truncate", "delete"),
    "runs": (
        "get_run",
        "put_run",
        "delete_run",
        "list_runs",
        "get_head",
        "put_head",
        "delete_head",
    ),
    "inbox": ("send", "read", "last_sequence", "schedule", "cancel_schedule", "purge"),
    # the per-partition index of running chains: per workflow, counted
    "owners": ("index_add", "index_remove", "index_list"),
}
#: partition leases and membership: per partition and per worker, counted apart
_MEMORY_LEASE_OPS = ("acquire", "renew", "release", "get_lease", "heartbeat", "leave", "members")


def count_memory(rt: Runtime, counter: RoundTrips) -> None:
    for store, ops in _MEMORY_OPS.items():
        owner = getattr(rt.backend, store)
        for op in ops:
            _wrap_method(counter, owner, op, f"{store}.{op}")
    for op in _MEMORY_LEASE_OPS:
        _wrap_method(counter, rt.backend.owners, op, f"owners.{op} (lease)")


def count_nats(rt: Runtime, counter: RoundTrips) -> None:
    conn = rt.backend.events._conn  # type: ignore[attr-defined]
    nc = conn.nc
    leases = conn_names(rt).leases_bucket

    def label(subject: str) -> str:
        parts = subject.split(".")
        if subject.startswith("$KV."):
            return f"kv {parts[1].rsplit('_', 1)[-1].lower()}" + (
                " lease" if parts[1] == leases else ""
            )
        if subject.startswith("$JS.API.DIRECT.GET"):
            return "direct get " + (parts[4].rsplit("_", 1)[-1].lower() if len(parts) > 4 else "")
        if subject.startswith("$JS.API."):
            return " ".join(p.lower() for p in parts[2:4])
        return f"publish {parts[2] if len(parts) > 2 else subject}"

    # the connection's lean request path, and nats-py's own for everything else
    for owner, attr in ((conn, "request"), (nc, "request"), (nc, "publish")):
        original = getattr(owner, attr)

        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            async def call(subject: str, *args: Any, **kwargs: Any) -> Any:
                if _inside.get():  # the publish of a request: counted with the request
                    return await original(subject, *args, **kwargs)
                token = _inside.set(True)
                counted = counter.begin(label(subject))
                try:
                    return await original(subject, *args, **kwargs)
                finally:
                    _inside.reset(token)
                    if counted:
                        counter.end()

            return call

        setattr(owner, attr, make(original))


_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("inside", default=False)


def conn_names(rt: Runtime) -> Any:
    return rt.backend.events._names  # type: ignore[attr-defined]


async def test_a_five_step_workflow_makes_at_most_nine_round_trips_on_its_critical_path(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[five_steps]) as rt:
        counter = RoundTrips()
        if rt.backend.events.__class__.__name__.startswith("Memory"):
            count_memory(rt, counter)
        else:
            count_nats(rt, counter)
        # warm up: the first workflow pays one-time costs (stream info, consumers)
        warm = await rt.client.start(five_steps, 0, workflow_id="warm-up")
        assert 5 == await warm.result(timeout=20)

        async def warm_recorded() -> bool:  # its record is written after its result
            return RunStatus.COMPLETED == (await warm.describe()).status

        await wait_until(warm_recorded)
        counter.on = True
        handle = await rt.client.start(five_steps, 1, workflow_id="counted")
        end = rt._services.announced_end("counted")  # type: ignore[union-attr]
        assert end is not None  # this process's worker announces the end

        class Marking:
            """The announcement's event, noting when it is set."""

            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def set(self) -> None:
                if counter.announced_at is None:
                    counter.announced_at = counter.waits
                self.inner.set()

            def is_set(self) -> bool:
                return bool(self.inner.is_set())

            async def wait(self) -> None:
                await self.inner.wait()

        end.event = Marking(end.event)  # type: ignore[assignment]
        result = await handle.result(timeout=20)
        counter.on = False

    assert 6 == result
    print(counter.report())
    assert counter.announced_at is not None, counter.report()
    assert counter.critical <= BUDGET, counter.report()
