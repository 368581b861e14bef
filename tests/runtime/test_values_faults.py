"""Values on the live path and on replay: claim checks, values the codec cannot carry,
history accounting, rebuilt step errors. On memory and on real JetStream."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

from riverrun import (
    EventType,
    HistoryLimits,
    RetryPolicy,
    Runtime,
    SerializationError,
    WorkflowFailed,
    continue_as_new,
    execute_child,
    info,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.persistence import Codec, MemoryPayloadStore, RunKey
from riverrun.runtime._payloads import Payloads
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

#: what the steps of the workflows below saw, by test: steps run live only, never on replay
_SEEN: dict[str, list[Any]] = {}

BIG = 400 * 1024  # over the default claim-check threshold (256 KiB)


def blob(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@step()
async def observe(key: str, value: Any) -> None:
    _SEEN.setdefault(key, []).append(value)


@step()
async def make_blob(size: int) -> bytes:
    return blob(size)


@workflow()
async def echo_signal(key: str) -> Any:
    payload = await wait_for_signal("big")
    await observe(key, payload)
    await wait_for_signal("go")  # the instance passivates here: the rest is a replay
    return payload


@workflow()
async def echo_step(key: str, size: int) -> Any:
    value = await make_blob(size)
    await observe(key, value)
    await wait_for_signal("go")
    return value


@workflow()
async def blob_child(size: int) -> bytes:
    return await make_blob(size)


@workflow()
async def echo_child(key: str, size: int) -> Any:
    value = await execute_child(blob_child, size, workflow_id=f"{key}.child")
    await observe(key, value)
    await wait_for_signal("go")
    return value


async def _live_and_replayed(
    rt: Runtime, key: str, wf: Any, *args: Any, signal: Any = None
) -> tuple[Any, Any]:
    """Run ``wf`` until its step has seen the value live, passivate it, then let it return
    the value it sees after replaying its history."""
    worker = rt.worker
    assert worker is not None
    _SEEN.pop(key, None)
    handle = await rt.client.start(wf, key, *args, workflow_id=key)
    if signal is not None:
        await handle.signal("big", signal)

    async def seen() -> bool:
        return key in _SEEN

    await wait_until(seen, timeout=120)
    passivated = worker.statistics().passivated

    async def passivated_since() -> bool:
        return worker.statistics().passivated > passivated

    await wait_until(passivated_since, timeout=60)
    await handle.signal("go")
    replayed = await handle.result(timeout=120)
    [live] = _SEEN.pop(key)
    return live, replayed


_FAST_PASSIVATION = {"passivate_after": timedelta(seconds=0.05)}


async def test_claim_checked_signal_is_the_value_live_and_replayed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    value = blob(BIG)
    async with make_runtime(workflows=[echo_signal], **_FAST_PASSIVATION) as rt:
        live, replayed = await _live_and_replayed(
            rt, _key(namespace_key), echo_signal, signal=value
        )
    assert value == live
    assert value == replayed


async def test_claim_checked_step_result_is_the_value_live_and_replayed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    async with make_runtime(workflows=[echo_step], **_FAST_PASSIVATION) as rt:
        live, replayed = await _live_and_replayed(rt, _key(namespace_key), echo_step, BIG)
    assert blob(BIG) == live
    assert blob(BIG) == replayed


async def test_claim_checked_child_result_is_the_value_live_and_replayed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    async with make_runtime(workflows=[echo_child, blob_child], **_FAST_PASSIVATION) as rt:
        live, replayed = await _live_and_replayed(rt, _key(namespace_key), echo_child, BIG)
    assert blob(BIG) == live
    assert blob(BIG) == replayed


@step()
async def make_loose_value() -> Any:
    return {"b": bytearray(b"x"), "d": OrderedDict(a=1), "t": (1, [2])}


@workflow()
async def echo_loose_value(key: str) -> Any:
    value = await make_loose_value()
    await observe(key, value)
    await wait_for_signal("go")
    return value


async def test_a_step_result_is_seen_as_the_codec_carries_it_live_and_replayed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    # the codec carries a bytearray as bytes and any mapping as a dict: live code sees
    # exactly what a replay will see, not the step's own objects
    async with make_runtime(workflows=[echo_loose_value], **_FAST_PASSIVATION) as rt:
        live, replayed = await _live_and_replayed(rt, _key(namespace_key), echo_loose_value)
    expected = {"b": b"x", "d": {"a": 1}, "t": (1, [2])}
    assert expected == live == replayed
    assert [bytes, dict, tuple] == [type(live[k]) for k in ("b", "d", "t")]
    assert [bytes, dict, tuple] == [type(replayed[k]) for k in ("b", "d", "t")]


@pytest.mark.slow
async def test_fifty_megabyte_signal_on_jetstream(nats_server: Any, namespace: str) -> None:
    value = blob(50 * 1024 * 1024)
    async with Runtime.connect(
        nats_server.url,
        workflows=[echo_signal],
        worker=True,
        namespace=namespace,
        **_FAST_PASSIVATION,
    ) as rt:
        live, replayed = await _live_and_replayed(rt, "fifty-mb", echo_signal, signal=value)
    assert len(value) == len(live) and value == live
    assert value == replayed


# -- history_bytes: one definition, live and replayed -------------------------------------


@workflow()
async def measure_history(key: str, rounds: int) -> list[list[Any]]:
    seen: list[list[Any]] = []
    for i in range(rounds):
        await make_blob(1000 * (i + 1))
        now = info()
        seen.append([now.history_length, now.history_bytes, now.continue_as_new_suggested])
        await observe(key, seen[-1])
        if i == rounds // 2:
            await wait_for_signal("go")  # passivates: the first half is replayed
    return seen


async def test_history_bytes_are_the_same_live_and_replayed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    rounds = 6
    async with make_runtime(
        workflows=[measure_history],
        history_limits=HistoryLimits(max_bytes=12_000),
        **_FAST_PASSIVATION,
    ) as rt:
        worker = rt.worker
        assert worker is not None
        _SEEN.pop(key, None)
        handle = await rt.client.start(measure_history, key, rounds, workflow_id=key)

        async def halfway() -> bool:
            return len(_SEEN.get(key, ())) == rounds // 2 + 1

        await wait_until(halfway)
        passivated = worker.statistics().passivated

        async def passivated_since() -> bool:
            return worker.statistics().passivated > passivated

        await wait_until(passivated_since)
        await handle.signal("go")
        replayed = await handle.result(timeout=60)
        run = await handle.describe()
        stored = await rt.backend.events.read(RunKey(workflow_id=key, run_id=run.run_id))
    live = _SEEN.pop(key)
    assert live == replayed
    # the suggestion flips on the way (the limit is in range), at the same point both ways
    assert [False, True] == sorted({suggested for _, _, suggested in live})
    # history_bytes is the encoded size of the events' stored data so far
    sizes = [len(Codec().dumps(event.data)) for event in stored]
    for length, size, _ in live:
        assert sum(sizes[:length]) == size


# -- values the codec cannot carry -------------------------------------------------------

_RUNS: dict[str, int] = {}


class Unregistered:
    pass


@attrs.frozen
class NotRegistered:
    x: int


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
async def returns_unregistered(key: str) -> Any:
    _RUNS[key] = _RUNS.get(key, 0) + 1
    return {"ok": [1, NotRegistered(x=1)]}


@workflow()
async def catches_serialization_error(key: str) -> str:
    try:
        await returns_unregistered(key)
    except SerializationError as err:
        return f"caught: {err}"
    return "not raised"


@workflow()
async def fails_on_serialization_error(key: str) -> None:
    await returns_unregistered(key)


async def test_a_step_result_the_codec_cannot_carry_fails_the_step_once(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    _RUNS.pop(key, None)
    async with make_runtime(workflows=[catches_serialization_error]) as rt:
        handle = await rt.client.start(catches_serialization_error, key, workflow_id=key)
        result = await handle.result(timeout=30)
        events = await handle.events()
    assert 1 == _RUNS[key]  # the step (its side effect) is not run again
    assert result.startswith("caught: ")
    assert "step 'returns_unregistered' result" in result
    assert "['ok'][1]" in result and "NotRegistered" in result
    [failed] = [e for e in events if e.type == EventType.STEP_FAILED]
    assert "SerializationError" == failed.data["error_type"]
    assert 1 == failed.data["attempts"]
    assert not [e for e in events if e.type == EventType.STEP_RETRYING]


async def test_an_uncaught_serialization_error_fails_the_workflow(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    _RUNS.pop(key, None)
    async with make_runtime(workflows=[fails_on_serialization_error]) as rt:
        handle = await rt.client.start(fails_on_serialization_error, key, workflow_id=key)
        with pytest.raises(WorkflowFailed, match="SerializationError"):
            await handle.result(timeout=30)
    assert 1 == _RUNS[key]


@attrs.define
class Positive:
    x: int = attrs.field(validator=attrs.validators.gt(0))


async def test_a_value_that_does_not_decode_from_its_own_encoding_is_a_serialization_error() -> (
    None
):
    payloads = Payloads(store=MemoryPayloadStore(), codec=Codec(), threshold=1024)
    payloads.codec.register_type(Positive, name="test.Positive")
    broken = Positive(x=1)
    object.__setattr__(broken, "x", -1)  # what its own __init__ refuses
    with pytest.raises(SerializationError, match="does not decode from its own encoding"):
        await payloads.pack({"v": broken}, "step 's' result")
    assert {"v": Positive(x=2)} == await payloads.pack({"v": Positive(x=2)}, "ok")


@workflow()
async def returns_naive_datetime() -> Any:
    return {"at": datetime(2026, 1, 1)}  # naive: the point of the test


@workflow()
async def returns_unregistered_class() -> Any:
    return Unregistered()


@pytest.mark.parametrize("wf", [returns_naive_datetime, returns_unregistered_class])
async def test_a_workflow_result_the_codec_cannot_carry_fails_the_workflow(
    make_runtime: RuntimeFactory, wf: Any
) -> None:
    async with make_runtime(workflows=[wf]) as rt:
        worker = rt.worker
        assert worker is not None
        handle = await rt.client.start(wf)
        with pytest.raises(WorkflowFailed, match="SerializationError") as caught:
            await handle.result(timeout=30)
        events = await handle.events()
        restarts = worker.statistics().restarts
    assert "workflow result" in str(caught.value)
    assert EventType.WORKFLOW_FAILED == events[-1].type
    assert "SerializationError" == events[-1].data["error_type"]
    assert 0 == restarts


async def test_an_argument_that_contains_itself_is_a_serialization_error(
    make_runtime: RuntimeFactory,
) -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    async with make_runtime(workflows=[echo_signal, echo_any]) as rt:
        with pytest.raises(SerializationError, match=r"args'\]\[0\]\[0\]: the value contains"):
            await rt.client.start(echo_any, cyclic)
        handle = await rt.client.start(echo_signal, "k")
        with pytest.raises(SerializationError, match="contains itself"):
            await handle.signal("big", cyclic)


@workflow()
async def echo_any(value: Any) -> Any:  # untyped: the value reaches the codec as it is
    return value


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@step(retry=RetryPolicy(max_attempts=1))
async def raises_huge() -> None:
    raise ValueError("x" * (2 * 1024 * 1024))


@workflow()
async def fails_hugely(kind: str) -> None:
    if kind == "step":
        await raises_huge()
    if kind == "bad-str":
        raise BadStr()
    raise RuntimeError("y" * (2 * 1024 * 1024))


@pytest.mark.parametrize("kind", ["step", "workflow", "bad-str"])
async def test_a_failure_message_too_large_or_unprintable_still_fails_the_workflow(
    make_runtime: RuntimeFactory, kind: str
) -> None:
    async with make_runtime(workflows=[fails_hugely]) as rt:
        worker = rt.worker
        assert worker is not None
        handle = await rt.client.start(fails_hugely, kind)
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=30)
        restarts = worker.statistics().restarts
    assert 0 == restarts
    expected = {"step": "characters cut", "workflow": "characters cut", "bad-str": "str() raised"}
    assert expected[kind] in str(caught.value)


# -- a failed step's builtin exception keeps its attributes ------------------------------


@step(retry=RetryPolicy(max_attempts=1))
async def raises_builtin(kind: str) -> None:
    if kind == "oserror":
        raise OSError(2, "No such file", "x")
    if kind == "import":
        raise ImportError("no module", name="mod", path="/p")
    raise ValueError("two", 2)


def describe_error(err: BaseException) -> list[Any]:
    return [
        type(err).__name__,
        list(err.args),
        getattr(err, "errno", None),
        getattr(err, "strerror", None),
        getattr(err, "filename", None),
        getattr(err, "name", None),
        getattr(err, "path", None),
    ]


@workflow()
async def catches_builtin(key: str, kind: str) -> list[Any]:
    try:
        await raises_builtin(kind)
    except Exception as err:
        seen = describe_error(err)
    await observe(key, seen)
    await wait_for_signal("go")
    return seen


@pytest.mark.parametrize(
    "kind, raised",
    [
        ("oserror", OSError(2, "No such file", "x")),
        ("import", ImportError("no module", name="mod", path="/p")),
        ("value", ValueError("two", 2)),
    ],
)
async def test_a_failed_steps_builtin_exception_keeps_its_attributes(
    make_runtime: RuntimeFactory, namespace_key: str, kind: str, raised: Exception
) -> None:
    async with make_runtime(workflows=[catches_builtin], **_FAST_PASSIVATION) as rt:
        live, replayed = await _live_and_replayed(rt, _key(namespace_key), catches_builtin, kind)
    assert describe_error(raised) == live == replayed


# -- continue-as-new carrying more than one event can hold ---------------------------------

PILE = 200 * 1024  # under the claim-check threshold: each carried signal stays inline


@workflow()
async def carries_a_pile(blob_arg: bytes, *, blob_kwarg: bytes, execution: int = 1) -> list[int]:
    if execution == 1:
        await wait_for_signal("go")  # the "pile" signals arrive first and stay unconsumed
        continue_as_new(blob_arg, blob_kwarg=blob_kwarg, execution=2)
    await wait_for_signal("again")  # passivates: the carried values are read back on replay
    piles = [await wait_for_signal("pile") for _ in range(8)]
    return [len(blob_arg), len(blob_kwarg), *(len(p) for p in piles)]


async def test_a_hand_over_too_large_for_one_event_claim_checks_what_it_carries(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    async with make_runtime(workflows=[carries_a_pile], **_FAST_PASSIVATION) as rt:
        worker = rt.worker
        assert worker is not None
        handle = await rt.client.start(
            carries_a_pile, blob(PILE), blob_kwarg=blob(PILE), workflow_id=key
        )
        for _ in range(8):
            await handle.signal("pile", blob(PILE))
        await handle.signal("go")

        async def continued_and_passivated() -> bool:
            # the instance that hands over hosts the new run: gone from memory, it passivated
            # there, and the new run will be replayed from its first event
            run = await handle.describe()
            return run.execution == 2 and worker.statistics().active == 0

        await wait_until(continued_and_passivated)
        await handle.signal("again")
        result = await handle.result(timeout=60)
        restarts = worker.statistics().restarts
    assert [PILE] * 10 == result
    assert 0 == restarts


def _key(nodeid: str) -> str:
    """A valid workflow id unique to the test."""
    return "wf-" + "".join(c if c.isalnum() else "-" for c in nodeid)[-80:]
