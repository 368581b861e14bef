"""tell, ask, mailboxes and backpressure."""

from __future__ import annotations

import anyio
import pytest

from riverrun._errors import ActorNotFound, ActorStopped, AskTimeout, MailboxFull
from riverrun.actors import Actor, ActorContext, ActorStatus, ActorSystem

from .conftest import Boom, Probe, Worker, one_for_one, spawn_child


class Gate(Actor):
    """Blocks on every message until the test opens the gate; records what it got."""

    def __init__(self, gate: anyio.Event, seen: list[object]) -> None:
        self.gate = gate
        self.seen = seen

    async def receive(self, ctx: ActorContext, message: object) -> object:
        await self.gate.wait()
        self.seen.append(message)
        return message


@pytest.mark.anyio
async def test_ask_returns_what_receive_returns() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Worker(Probe()), name="echo")
        assert "hello" == await ref.ask("hello")
        assert 42 == await ref.ask(42, timeout=5)


@pytest.mark.anyio
async def test_tell_is_handled_in_order() -> None:
    seen: list[object] = []
    gate = anyio.Event()
    gate.set()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Gate(gate, seen))
        for i in range(10):
            await ref.tell(i)
        assert "last" == await ref.ask("last")
    assert [*range(10), "last"] == seen


@pytest.mark.anyio
async def test_ask_timeout_is_a_timeout_error() -> None:
    async with ActorSystem(grace=0) as system:
        ref = await system.spawn(lambda: Gate(anyio.Event(), []))
        with pytest.raises(AskTimeout) as info:
            await ref.ask("never", timeout=0.01)
        assert isinstance(info.value, TimeoutError)


@pytest.mark.anyio
async def test_full_mailbox_applies_backpressure() -> None:
    seen: list[object] = []
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Gate(gate, seen), mailbox_size=2)
        await ref.tell(0)  # taken by the actor, which now blocks on the gate
        await anyio.wait_all_tasks_blocked()
        await ref.tell(1)
        await ref.tell(2)  # the mailbox (2) is full now
        with pytest.raises(MailboxFull):
            ref.tell_nowait(3)
        assert 2 == ref.statistics().mailbox.current_buffer_used

        sent = anyio.Event()

        async def blocked_teller() -> None:
            await ref.tell(3)
            sent.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_teller)
            await anyio.wait_all_tasks_blocked()
            assert not sent.is_set()
            assert 1 == ref.statistics().mailbox.tasks_waiting_send
            gate.set()  # the actor drains; the teller gets in
        assert "sync" == await ref.ask("sync")
    assert [0, 1, 2, 3, "sync"] == seen


@pytest.mark.anyio
async def test_tell_nowait_fits_while_there_is_room() -> None:
    seen: list[object] = []
    gate = anyio.Event()
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Gate(gate, seen), mailbox_size=3)
        for i in range(3):
            ref.tell_nowait(i)
        gate.set()
        await ref.ask("sync")
    assert [0, 1, 2, "sync"] == seen


@pytest.mark.anyio
async def test_a_stopped_actor_refuses_messages() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Worker(Probe()), name="w")
        await ref.stop()
        assert ActorStatus.STOPPED == ref.status
        with pytest.raises(ActorStopped):
            await ref.tell("x")
        with pytest.raises(ActorStopped):
            ref.tell_nowait("x")
        with pytest.raises(ActorStopped):
            await ref.ask("x")
        with pytest.raises(ActorNotFound):
            system.lookup("w")
        await ref.stop()  # stopping twice is fine
        await ref.wait_stopped()


@pytest.mark.anyio
async def test_asks_queued_when_an_actor_stops_fail_with_actor_stopped() -> None:
    gate = anyio.Event()
    async with ActorSystem(grace=0) as system:
        ref = await system.spawn(lambda: Gate(gate, []))
        results: list[BaseException] = []

        async def asker(message: str) -> None:
            try:
                await ref.ask(message)
            except ActorStopped as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asker, "in hand")
            tg.start_soon(asker, "queued")
            await anyio.wait_all_tasks_blocked()
            await ref.stop()
        assert 2 == len(results)


@pytest.mark.anyio
async def test_ask_whose_receive_raises_gets_the_exception_and_the_actor_restarts() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one()) as system:
        ref = await system.spawn(lambda: Worker(probe), name="w")
        with pytest.raises(Boom):
            await ref.ask("boom")
        assert "after" == await ref.ask("after")
        stats = ref.statistics()
        assert (1, 1) == (stats.restarts, stats.failures)
    assert ["w", "w"] == probe.of("start")


@pytest.mark.anyio
async def test_messages_queued_during_a_restart_reach_the_next_incarnation() -> None:
    probe = Probe()
    async with ActorSystem(strategy=one_for_one()) as system:
        ref = await system.spawn(lambda: Worker(probe), name="w")
        await ref.tell("boom")
        await ref.tell("a")
        assert "b" == await ref.ask("b")
        assert 2 == ref.statistics().messages_processed


@pytest.mark.anyio
async def test_lookup_finds_actors_by_path() -> None:
    async with ActorSystem() as system:
        top = await system.spawn(lambda: Worker(Probe()), name="top")
        child = await spawn_child(top, "child")
        assert top is system.lookup("top")
        assert child is system.lookup("top/child")
        assert child is system.lookup("/top/child/")
        assert top is child.parent
        assert (child,) == top.children
        assert None is top.parent
        assert 2 == len(system)
        with pytest.raises(ActorNotFound):
            system.lookup("child")


@pytest.mark.anyio
async def test_names_are_unique_among_live_siblings() -> None:
    async with ActorSystem() as system:
        first = await system.spawn(lambda: Worker(Probe()), name="a")
        with pytest.raises(ValueError, match="already has a live child"):
            await system.spawn(lambda: Worker(Probe()), name="a")
        with pytest.raises(ValueError, match="without '/'"):
            await system.spawn(lambda: Worker(Probe()), name="a/b")
        await first.stop()
        again = await system.spawn(lambda: Worker(Probe()), name="a")
        assert again is not first
        anonymous = await system.spawn(lambda: Worker(Probe()))
        assert anonymous.name.startswith("$")


@pytest.mark.anyio
async def test_statistics_and_repr_show_live_state() -> None:
    async with ActorSystem() as system:
        ref = await system.spawn(lambda: Worker(Probe()), name="w", mailbox_size=7)
        await ref.ask(("spawn", "c"))
        await ref.ask("x")
        stats = ref.statistics()
        assert "w" == stats.path
        assert ActorStatus.RUNNING == stats.status
        assert 2 == stats.messages_processed
        assert 1 == stats.children
        assert 7 == stats.mailbox.max_buffer_size
        assert 0 == stats.mailbox.current_buffer_used
        assert "<ActorRef 'w' running>" == repr(ref)
        assert "<ActorSystem running actors=2 failures=0>" == repr(system)
    assert "<ActorSystem closed actors=0 failures=0>" == repr(system)


@pytest.mark.anyio
async def test_the_system_refuses_reuse_and_bad_arguments() -> None:
    system = ActorSystem()
    with pytest.raises(RuntimeError, match="is new"):
        await system.spawn(lambda: Worker(Probe()))
    async with system:
        with pytest.raises(ValueError):
            await system.spawn(lambda: Worker(Probe()), mailbox_size=0)
        with pytest.raises(ValueError):
            await system.spawn(lambda: Worker(Probe()), grace=-1)
    with pytest.raises(RuntimeError):
        async with system:
            pass
    with pytest.raises(RuntimeError, match="closed"):
        await system.spawn(lambda: Worker(Probe()))
