"""Exit codes, and the translation of errors into one-line messages.

Every command runs through :func:`run_command`, the one place where exceptions become exit
codes. A user sees one line on stderr (``riverrun: error: ...``), with a hint where one helps,
and never a traceback for bad input or an unreachable server. ``RIVERRUN_DEBUG=1`` prints the
traceback too, for bug reports. Every message is scrubbed of URL credentials
(``nats://user:***@host``) on its way out, whatever produced it.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import IO, NoReturn, TypeVar

import anyio
import click

from .._errors import (
    CancellationError,
    NatsServerError,
    RiverrunError,
    StoreUnavailable,
    WorkflowAlreadyRunning,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowNotRegistered,
)
from ..persistence import redact_url

__all__ = ["CliError", "ExitCode", "fail", "run_command", "unreachable_message"]

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """The exit status of every ``riverrun`` command (documented in docs/cli.md)."""

    OK = 0
    #: the workflow failed or was cancelled, or the operation could not be done
    FAILED = 1
    #: bad usage or bad input: unknown option, malformed JSON, a bad date
    USAGE = 2
    #: no such run, workflow, module or attribute
    NOT_FOUND = 3
    #: the NATS server cannot be reached
    UNREACHABLE = 4
    #: interrupted by Ctrl-C
    INTERRUPTED = 130


class CliError(click.ClickException):
    """An error that ends the command with ``exit_code`` and a one-line message."""

    def __init__(self, message: str, *, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(redact_url(message))
        # click declares ``exit_code`` a ClassVar (8.5+); the per-instance code lives in the
        # instance dict, which shadows the class attribute wherever click reads it
        vars(self)["exit_code"] = int(exit_code)

    def show(self, file: IO[str] | None = None) -> None:
        click.echo(f"riverrun: error: {self.format_message()}", file=file or sys.stderr)


def fail(message: str, *, exit_code: ExitCode = ExitCode.FAILED) -> NoReturn:
    """Stop the command with a one-line error."""
    raise CliError(message, exit_code=exit_code)


def unreachable_message(servers: list[str], cause: BaseException | str | None = None) -> str:
    """The one line shown when NATS cannot be reached, with what to do about it."""
    hint = (
        "Hint: start a local server with 'riverrun dev', or point --servers / "
        "RIVERRUN_SERVERS at a running one."
    )
    detail = _first_line(cause) if cause else ""
    if "NATS" not in detail:  # the persistence layer's messages already name the server
        where = ", ".join(servers) or "the NATS servers"
        detail = f"cannot reach NATS at {where}" + (f" ({detail})" if detail else "")
    detail = redact_url(detail).rstrip(". ")
    return f"{detail}{'' if detail.endswith(('?', '!')) else '.'} {hint}"


def run_command(fn: Callable[[], Awaitable[T]], *, servers: list[str] | None = None) -> T:
    """Run ``fn`` under anyio and turn what it raises into an exit code and one line.

    ``servers`` names the NATS servers the command talks to, for the unreachable message.
    """
    try:
        return anyio.run(fn)
    except KeyboardInterrupt:
        click.echo("riverrun: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except BaseException as exc:
        error = _unwrap(exc)
        if isinstance(error, KeyboardInterrupt):
            click.echo("riverrun: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        if isinstance(error, click.ClickException | SystemExit):
            raise error from None
        translated = translate(error, servers=servers or [])
        if translated is None:
            _internal_error(error)
        if os.environ.get("RIVERRUN_DEBUG"):
            traceback.print_exception(error)
        raise translated from None


def translate(error: BaseException, *, servers: list[str]) -> CliError | None:
    """The :class:`CliError` for ``error``, or ``None`` if it is not an expected error."""
    if isinstance(error, StoreUnavailable | NatsServerError) or _is_nats_connect_error(error):
        if isinstance(error, NatsServerError):
            return CliError(_first_line(error), exit_code=ExitCode.FAILED)
        return CliError(unreachable_message(servers, error), exit_code=ExitCode.UNREACHABLE)
    if isinstance(error, WorkflowNotFound | WorkflowNotRegistered):
        return CliError(_first_line(error), exit_code=ExitCode.NOT_FOUND)
    if isinstance(error, WorkflowFailed):
        return CliError(f"workflow failed: {_first_line(error)}", exit_code=ExitCode.FAILED)
    if isinstance(error, CancellationError):
        return CliError(f"workflow cancelled: {_first_line(error)}", exit_code=ExitCode.FAILED)
    if isinstance(error, WorkflowAlreadyRunning):
        return CliError(_first_line(error), exit_code=ExitCode.FAILED)
    if isinstance(error, RiverrunError):
        return CliError(_first_line(error), exit_code=ExitCode.FAILED)
    if isinstance(error, ValueError):
        # the runtime validates what the user typed (a workflow id, a signal name, ...)
        return CliError(_first_line(error), exit_code=ExitCode.USAGE)
    return None


def _is_nats_connect_error(error: BaseException) -> bool:
    # The runtime translates connection failures into StoreUnavailable; this is the backstop
    # for a failure it did not foresee, so that the user still gets exit code 4 and a hint.
    module = type(error).__module__
    if module.startswith("nats"):
        return type(error).__name__ in {"NoServersError", "TimeoutError", "ConnectionClosedError"}
    return isinstance(error, ConnectionRefusedError)


def _unwrap(exc: BaseException) -> BaseException:
    """The one interesting exception inside (nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup):
        # outside the event loop now: anyio.get_cancelled_exc_class() would need one, and
        # anyio.run uses asyncio
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _internal_error(error: BaseException) -> NoReturn:
    if os.environ.get("RIVERRUN_DEBUG"):
        traceback.print_exception(error)
        hint = ""
    else:
        hint = " (set RIVERRUN_DEBUG=1 to see the traceback)"
    click.echo(
        f"riverrun: internal error: {type(error).__name__}: {redact_url(_first_line(error))}"
        f"{hint}",
        err=True,
    )
    sys.exit(ExitCode.FAILED)
