"""The deterministic asyncio event loop that workflow code runs on.

Design note. Workflow code is ordinary asyncio, so ``asyncio.gather``, ``TaskGroup``,
``create_task``, ``wait``, ``wait_for`` and ``timeout`` work in it; but it runs on this loop,
never on the worker's. The loop has a ready queue and nothing else: no selector, no clock,
no threads. ``run_until_blocked`` runs ready callbacks in FIFO order until none is left;
the state machine calls it after applying each recorded event, so what runs, and in which
order, is a function of the history alone.

``time()`` is the workflow's logical time: the recorded time of the event being applied.
``call_at``/``call_later`` (what ``asyncio.timeout``, ``wait_for``, ``wait(timeout=...)`` and
``asyncio.sleep`` use) become durable timers through the ``on_timer`` hook: the machine turns
each into a ``StartTimer`` command and runs the callback when the timer fires (its
``timer.fired`` event is applied); cancelling the handle cancels the timer. Everything that
would touch the outside world (sockets, subprocesses, executors, signals, threads) raises
``WorkflowLoopError`` naming the fix: do it in a step.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, NoReturn, TypeVar

from .._errors import WorkflowLoopError

__all__ = ["WorkflowEventLoop"]

_T = TypeVar("_T")

#: a workflow that keeps scheduling callbacks without ever blocking is a busy loop: past this
#: many callbacks in one run it is stopped (its run fails) rather than hang the worker
MAX_CALLBACKS_PER_RUN = 1_000_000


def _refuse_timer(handle: asyncio.TimerHandle) -> None:
    raise WorkflowLoopError("the workflow's run has ended; no timer can start in it")


def _ignore_timer(handle: asyncio.TimerHandle) -> None:
    pass


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    """A ready queue run by hand: see the module docstring."""

    def __init__(
        self,
        on_timer: Callable[[asyncio.TimerHandle], None],
        on_timer_cancelled: Callable[[asyncio.TimerHandle], None],
        on_error: Callable[[dict[str, Any]], None],
    ) -> None:
        self._ready: deque[asyncio.Handle] = deque()
        self._now = 0.0
        self._on_timer = on_timer
        self._on_timer_cancelled = on_timer_cancelled
        self._on_error = on_error
        self._closed = False
        self._running = False
        self.tasks: list[asyncio.Task[Any]] = []

    # -- what the machine calls ------------------------------------------------------------

    def set_time(self, now: float) -> None:
        """The logical time: the recorded time of the event being applied (never backwards)."""
        self._now = max(self._now, now)

    def run_until_blocked(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Run ready callbacks until none is left (or ``should_stop()``).

        The loop is the running loop meanwhile (``asyncio.get_running_loop()`` in workflow
        code returns it); the worker's loop is put back afterwards.
        """
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        self._running = True
        count = 0
        try:
            while self._ready and not should_stop():
                handle = self._ready.popleft()
                if handle._cancelled:
                    continue
                count += 1
                if count > MAX_CALLBACKS_PER_RUN:
                    raise WorkflowLoopError(
                        f"workflow code ran {MAX_CALLBACKS_PER_RUN} callbacks without waiting "
                        "on a riverrun operation (a busy loop?); await a step, a timer or a "
                        "signal inside long loops"
                    )
                handle._run()
        finally:
            self._running = False
            asyncio.events._set_running_loop(previous)

    def fire(self, handle: asyncio.TimerHandle) -> None:
        """A durable timer created by ``call_at`` fired: its callback is ready."""
        if not handle.cancelled():
            self._ready.append(handle)

    def has_ready(self) -> bool:
        return bool(self._ready)

    # -- scheduling --------------------------------------------------------------------------

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        if when <= self._now:
            self._ready.append(handle)  # due already: no durable timer needed
        else:
            handle._scheduled = True  # type: ignore[attr-defined]
            self._on_timer(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._on_timer_cancelled(handle)

    def time(self) -> float:
        return self._now

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        if self._closed:
            if hasattr(coro, "close"):
                coro.close()
            raise WorkflowLoopError("the workflow's run has ended; no task can start in it")
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        # a run left in memory half-way (passivated, its worker stopped) is dropped with its
        # tasks pending: normal, and replayed when it is hosted again
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        self.tasks.append(task)
        return task

    # -- state -------------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self, on_error: Callable[[dict[str, Any]], None] | None = None) -> None:
        """No callback runs and no task or timer starts any more.

        The tasks and the callbacks the loop was built with are dropped: they refer to the
        machine, which refers to the loop, and the cycle would leave the run's objects to the
        cyclic garbage collector instead of freeing them with the last reference. ``on_error``
        replaces the error callback (for a future collected later with an exception nobody
        retrieved).
        """
        self._closed = True
        self._ready.clear()
        self.tasks = []
        self._on_timer = _refuse_timer
        self._on_timer_cancelled = _ignore_timer
        if on_error is not None:
            self._on_error = on_error

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def get_task_factory(self) -> None:
        return None

    def set_task_factory(self, factory: Any) -> NoReturn:
        _forbidden("loop.set_task_factory()")

    def get_exception_handler(self) -> None:
        return None

    def set_exception_handler(self, handler: Any) -> NoReturn:
        _forbidden("loop.set_exception_handler()")

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self._on_error(context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self._on_error(context)

    # -- what a workflow may not do ------------------------------------------------------------

    def run_forever(self) -> NoReturn:
        _forbidden("loop.run_forever()")

    def run_until_complete(self, future: Any) -> NoReturn:
        _forbidden("loop.run_until_complete()")

    def stop(self) -> NoReturn:
        _forbidden("loop.stop()")

    async def shutdown_asyncgens(self) -> None:
        pass

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        pass

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        _forbidden("loop.call_soon_threadsafe()")

    def run_in_executor(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        _forbidden("loop.run_in_executor() (and asyncio.to_thread)")

    def set_default_executor(self, *args: Any, **kwargs: Any) -> NoReturn:
        _forbidden("loop.set_default_executor()")


def _forbidden(what: str, *args: Any, **kwargs: Any) -> NoReturn:
    raise WorkflowLoopError(
        f"{what} is not a riverrun operation and cannot be used in workflow code: it runs on "
        "riverrun's deterministic event loop, which replays from the history and does no I/O; "
        "do this in a @step and await the step from the workflow"
    )


def _io_method(name: str) -> Callable[..., Any]:
    # coroutine methods included: they raise at the call, not at an await
    def method(self: WorkflowEventLoop, *args: Any, **kwargs: Any) -> NoReturn:
        _forbidden(f"loop.{name}()")

    method.__name__ = name
    return method


_ASYNC_IO = frozenset(
    {
        "getaddrinfo",
        "getnameinfo",
        "create_connection",
        "create_server",
        "sendfile",
        "start_tls",
        "create_unix_connection",
        "create_unix_server",
        "connect_accepted_socket",
        "create_datagram_endpoint",
        "connect_read_pipe",
        "connect_write_pipe",
        "subprocess_shell",
        "subprocess_exec",
        "sock_recv",
        "sock_recv_into",
        "sock_recvfrom",
        "sock_recvfrom_into",
        "sock_sendall",
        "sock_sendto",
        "sock_connect",
        "sock_accept",
        "sock_sendfile",
    }
)
for _name in _ASYNC_IO | {
    "add_reader",
    "remove_reader",
    "add_writer",
    "remove_writer",
    "add_signal_handler",
    "remove_signal_handler",
}:
    setattr(WorkflowEventLoop, _name, _io_method(_name))
