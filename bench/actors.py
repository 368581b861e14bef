"""Actor kernel benchmark: tell and ask through an actor vs raw anyio memory streams.

Run ``python bench/actors.py``. Each figure is the best of a few rounds, and each actor
figure is printed as a ratio against its raw baseline measured in the same process, so the
ratios are comparable across machines. Targets: tell <= 2x, ask <= 3x the raw stream.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import anyio

from riverrun.actors import Actor, ActorContext, ActorSystem

BUFFER = 1000


class _Sink(Actor):
    """Counts messages; sets ``done`` after ``expected`` of them."""

    def __init__(self, expected: int, done: anyio.Event) -> None:
        self.expected = expected
        self.done = done
        self.count = 0

    async def receive(self, ctx: ActorContext, message: object) -> object:
        self.count += 1
        if self.count == self.expected:
            self.done.set()
        return message


async def _handle(message: object) -> object:
    # The raw baselines call a handler too, as an actor's receive is a call.
    return message


async def raw_tell(n: int) -> float:
    send, receive = anyio.create_memory_object_stream[object](BUFFER)
    done = anyio.Event()

    async def consumer() -> None:
        count = 0
        async with receive:
            async for item in receive:
                await _handle(item)
                count += 1
                if count == n:
                    done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        start = time.perf_counter()
        async with send:
            for i in range(n):
                await send.send(i)
            await done.wait()
        elapsed = time.perf_counter() - start
    return n / elapsed


async def actor_tell(n: int) -> float:
    done = anyio.Event()
    async with ActorSystem(mailbox_size=BUFFER) as system:
        ref = await system.spawn(lambda: _Sink(n, done))
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await done.wait()
        elapsed = time.perf_counter() - start
    return n / elapsed


async def raw_ask(n: int) -> float:
    req_send, req_receive = anyio.create_memory_object_stream[object](BUFFER)
    rep_send, rep_receive = anyio.create_memory_object_stream[object](BUFFER)

    async def responder() -> None:
        async with req_receive, rep_send:
            async for item in req_receive:
                await rep_send.send(await _handle(item))

    async with anyio.create_task_group() as tg:
        tg.start_soon(responder)
        start = time.perf_counter()
        async with req_send, rep_receive:
            for i in range(n):
                await req_send.send(i)
                await rep_receive.receive()
        elapsed = time.perf_counter() - start
    return n / elapsed


async def actor_ask(n: int, timeout: float | None) -> float:
    async with ActorSystem(mailbox_size=BUFFER) as system:
        ref = await system.spawn(lambda: _Sink(-1, anyio.Event()))
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(i, timeout=timeout)
        elapsed = time.perf_counter() - start
    return n / elapsed


async def best(rounds: int, run: Callable[[], Awaitable[float]]) -> float:
    return max([await run() for _ in range(rounds)])


async def main(tell_n: int, ask_n: int, rounds: int) -> None:
    # Interleave the baselines and the actor runs so that drift affects both alike.
    raw_t = await best(rounds, lambda: raw_tell(tell_n))
    act_t = await best(rounds, lambda: actor_tell(tell_n))
    raw_a = await best(rounds, lambda: raw_ask(ask_n))
    act_a = await best(rounds, lambda: actor_ask(ask_n, None))
    act_at = await best(rounds, lambda: actor_ask(ask_n, 10.0))
    print(
        f"tell: raw stream {raw_t:>12,.0f} msg/s | actor {act_t:>12,.0f} msg/s"
        f" | ratio {raw_t / act_t:.2f}x (target <= 2x)"
    )
    print(
        f"ask:  raw req/rep {raw_a:>11,.0f} rt/s  | actor {act_a:>12,.0f} rt/s "
        f" | ratio {raw_a / act_a:.2f}x (target <= 3x)"
    )
    print(f"ask with timeout=10s: actor {act_at:>12,.0f} rt/s | ratio {raw_a / act_at:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tell", type=int, default=100_000, help="messages per tell run")
    parser.add_argument("--ask", type=int, default=25_000, help="round trips per ask run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (best kept)")
    args = parser.parse_args()
    anyio.run(main, args.tell, args.ask, args.rounds)
