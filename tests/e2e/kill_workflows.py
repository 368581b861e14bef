"""Workflows for the kill tests, and a worker process that hosts them.

Run as ``python -m tests.e2e.kill_workflows NATS_URL NAMESPACE LOG_PATH`` (from the repo root):
the worker serves the namespace until it is killed. Every step execution appends a line
``RUN <key> <nonce> <unix time>`` to ``LOG_PATH`` (``O_APPEND``, fsync'ed before the step
returns), and
returns ``<key>#<nonce>``: the workflow's final result lists the token of every step it used,
so a test can tell how often each step *ran* (log lines) from which execution was *recorded*
(the one token in the result).

``RIVERRUN_E2E_KILL=<point>:<n>`` makes the worker SIGKILL itself the ``n``-th time it reaches
``<point>`` (it first logs ``KILL <point> <pid>``):

- ``step``: inside the step that runs right before each ``continue_as_new`` (after it ran);
- ``before``: right before the continue-as-new link (the old run's terminal event, the
  hand-over's one append) is written;
- ``after``: right after the link was acknowledged: the hand-over is committed, the new run
  has no event yet (recovery rolls its first event forward from the link), nothing is
  projected into run records, chain head or truncation yet;
- ``successor``: right after the new run's first event (rolled forward from the link) was
  acknowledged, before any projection;
- ``child-end``: right before a finished child chain notifies its parent.
- ``fan``: inside a step of ``kill_fan_out`` (after it ran), the others in flight with it.

The hooks wrap the backend classes in this process only; the runtime is unchanged.
``RIVERRUN_E2E_LEASE_TTL=<seconds>`` sets the worker's lease ttl, and with
``RIVERRUN_E2E_WAIT_LEASES=1`` the worker waits that long before it starts (a killed worker
cannot release its leases, and its replacement is another owner).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from riverrun import Runtime, continue_as_new, execute_child, sleep, step, wait_for_signal, workflow

#: each signal the chain waits for is followed by this many units of work
UNITS_PER_SIGNAL = 6
#: a run does this many units, then continues as new
PER_RUN = 5

KILL_ENV = "RIVERRUN_E2E_KILL"
#: the worker's lease ttl in seconds (default: the runtime's)
LEASE_TTL_ENV = "RIVERRUN_E2E_LEASE_TTL"
#: set: the worker first waits one lease ttl, so that a killed predecessor's leases expired
WAIT_LEASES_ENV = "RIVERRUN_E2E_WAIT_LEASES"
KILL_POINTS = ("step", "before", "after", "successor", "child-end", "fan")

_log_path: Path | None = None


def configure(log_path: str | os.PathLike[str]) -> None:
    """Where this process's steps log their executions."""
    global _log_path
    _log_path = Path(log_path)


def log_line(line: str) -> None:
    """Append one line durably: it is on disk before the caller goes on."""
    if _log_path is None:
        raise RuntimeError("kill_workflows.configure(log_path) was not called")
    fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


# -- self-kill hooks ----------------------------------------------------------------------

_kill_point: str | None = None
_kill_at = 0
_reached: dict[str, int] = {}


def maybe_kill(point: str) -> None:
    """SIGKILL this process if it reaches ``point`` for the configured time."""
    if point != _kill_point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] == _kill_at:
        log_line(f"KILL {point} {os.getpid()}")
        os.kill(os.getpid(), signal.SIGKILL)


def install_kill_hooks(spec: str | None) -> None:
    """Arm ``maybe_kill`` from ``<point>:<n>`` and wrap the backend methods it watches."""
    global _kill_point, _kill_at
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point not in KILL_POINTS:
        raise ValueError(f"{KILL_ENV}: unknown kill point {point!r}; use one of {KILL_POINTS}")
    _kill_point, _kill_at = point, int(n or "1")

    from riverrun.persistence._jetstream_events import JetStreamEventLog
    from riverrun.persistence._jetstream_inbox import JetStreamInbox

    append = JetStreamEventLog.append

    async def append_hooked(
        self: JetStreamEventLog, key: Any, event: Any, **kwargs: Any
    ) -> int:
        link = event.type == "workflow.continued_as_new"
        successor = event.type == "workflow.started" and bool(
            event.data.get("continued_from_run_id")
        )
        if link:
            maybe_kill("before")
        out = await append(self, key, event, **kwargs)
        if link:
            maybe_kill("after")
        elif successor:
            maybe_kill("successor")
        return out

    send = JetStreamInbox.send

    async def send_hooked(
        self: JetStreamInbox, workflow_id: str, kind: str, data: Any, **kwargs: Any
    ) -> int:
        if kind == "child":
            maybe_kill("child-end")
        return await send(self, workflow_id, kind, data, **kwargs)

    JetStreamEventLog.append = append_hooked  # type: ignore[method-assign]
    JetStreamInbox.send = send_hooked  # type: ignore[method-assign,assignment]


# -- steps and workflows --------------------------------------------------------------------


def _token(key: str) -> str:
    nonce = uuid.uuid4().hex[:12]
    log_line(f"RUN {key} {nonce} {time.time():.3f}")
    return f"{key}#{nonce}"


@step()
async def work(key: str, payload: Any = None) -> str:
    return _token(key)


@step()
async def checkpoint(key: str) -> str:
    """The step each run executes right before it continues as new."""
    token = _token(key)
    maybe_kill("step")
    return token


def timer_seconds(unit: int) -> float:
    return 0.05 + 0.05 * (unit // UNITS_PER_SIGNAL % 4)


def is_child_unit(unit: int) -> bool:
    return unit % UNITS_PER_SIGNAL == 4 and unit // UNITS_PER_SIGNAL % 2 == 0


def child_id(label: str, unit: int) -> str:
    return f"{label}.child.{unit}"


@workflow()
async def kill_child(key: str, phase: int = 0, first: str | None = None) -> list[str]:
    """A child that continues as new once: two steps, a timer, two runs."""
    token = await work(f"{key}/c{phase}")
    if phase == 0:
        await sleep(0.05)
        continue_as_new(key, 1, token)
    assert first is not None
    return [first, token]


@workflow()
async def kill_chain(
    label: str,
    units: int,
    unit: int = 0,
    tokens: list[str] | None = None,
    signals: list[Any] | None = None,
) -> dict[str, list[Any]]:
    """``units`` units of work, ``PER_RUN`` per run: steps, timers, signals and children.

    Unit ``u`` waits for a signal when ``u % UNITS_PER_SIGNAL == 0``, sleeps on a durable
    timer when it is 2, runs a child when it is 4 (every other time); every unit records a
    step (a child records two). Everything it used is carried in its arguments.
    """
    tokens = list(tokens or [])
    signals = list(signals or [])
    start = unit
    while unit < units:
        key = f"{label}/{unit}"
        kind = unit % UNITS_PER_SIGNAL
        if kind == 0:
            payload = await wait_for_signal("go")
            signals.append(payload)
            tokens.append(await work(key, payload))
        elif kind == 2:
            await sleep(timer_seconds(unit))
            tokens.append(await work(key))
        elif is_child_unit(unit):
            tokens.extend(await execute_child(kill_child, key, workflow_id=child_id(label, unit)))
        else:
            tokens.append(await work(key))
        unit += 1
        if unit - start == PER_RUN and unit < units:
            tokens.append(await checkpoint(f"{label}/cp{unit}"))
            continue_as_new(label, units, unit, tokens, signals)
    return {"tokens": tokens, "signals": signals}


@step()
async def fan_work(key: str, i: int) -> str:
    """One step of a fan-out: they end at three different times."""
    token = _token(key)
    await anyio.sleep(0.05 * (i % 3))
    maybe_kill("fan")
    return token


@workflow()
async def kill_fan_out(label: str, n: int) -> list[str]:
    """``n`` steps in flight together (asyncio.gather), results in argument order."""
    return list(await asyncio.gather(*(fan_work(f"{label}/{i}", i) for i in range(n))))


WORKFLOWS = [kill_chain, kill_child, kill_fan_out]


def expected_keys(label: str, units: int) -> list[str]:
    """The step keys of ``kill_chain(label, units)``'s result, in order."""
    keys: list[str] = []
    for unit in range(units):
        key = f"{label}/{unit}"
        keys.extend([f"{key}/c0", f"{key}/c1"] if is_child_unit(unit) else [key])
        if (unit + 1) % PER_RUN == 0 and unit + 1 < units:
            keys.append(f"{label}/cp{unit + 1}")
    return keys


def expected_runs(units: int) -> int:
    """Runs in ``kill_chain``'s chain: a new one every ``PER_RUN`` units."""
    return max(1, -(-units // PER_RUN))


def child_units(units: int) -> list[int]:
    return [u for u in range(units) if is_child_unit(u)]


def read_log(path: str | os.PathLike[str]) -> list[list[str]]:
    """The log's lines, split into words (a torn last line cannot happen: one write each)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines() if line]


class LogTail:
    """Reads what was appended to the step log since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.buffer = b""
        #: step executions seen so far
        self.steps = 0

    def new_lines(self) -> list[list[str]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.buffer + data
        complete, _, self.buffer = data.rpartition(b"\n")
        lines = [line.split() for line in complete.decode().splitlines() if line]
        self.steps += sum(1 for words in lines if words[0] == "RUN")
        return lines


# -- the worker process ---------------------------------------------------------------------


async def serve(url: str, namespace: str) -> None:
    opts: dict[str, Any] = {}
    ttl = os.environ.get(LEASE_TTL_ENV)
    if ttl:
        opts["lease_ttl"] = timedelta(seconds=float(ttl))
        if os.environ.get(WAIT_LEASES_ENV):
            # A killed worker cannot release its leases, and this process is a new owner:
            # wait until they have expired, as a replacement worker has to.
            await anyio.sleep(float(ttl))
    async with Runtime.connect(
        url, workflows=WORKFLOWS, namespace=namespace, worker=True, **opts
    ) as rt:
        log_line(f"READY {os.getpid()}")
        await rt.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    url, namespace, log_path = (sys.argv[1:] if argv is None else argv)[:3]
    configure(log_path)
    install_kill_hooks(os.environ.get(KILL_ENV))
    anyio.run(serve, url, namespace)


if __name__ == "__main__":
    main()
