"""Errors become exit codes and one-line messages."""

from __future__ import annotations

import pytest

from riverrun._errors import (
    CancellationError,
    ConcurrencyConflict,
    NatsServerError,
    StoreUnavailable,
    WorkflowAlreadyRunning,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowNotRegistered,
)
from riverrun.cli._exit import ExitCode, _unwrap, translate, unreachable_message

SERVERS = ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreUnavailable("cannot connect to NATS at nats://x: refused"), ExitCode.UNREACHABLE),
        (ConnectionRefusedError(111, "refused"), ExitCode.UNREACHABLE),
        (WorkflowNotFound("no run 'x'"), ExitCode.NOT_FOUND),
        (WorkflowNotRegistered("no workflow 'x'"), ExitCode.NOT_FOUND),
        (WorkflowFailed("boom"), ExitCode.FAILED),
        (CancellationError("cancelled"), ExitCode.FAILED),
        (WorkflowAlreadyRunning("running"), ExitCode.FAILED),
        (ConcurrencyConflict("lost a race"), ExitCode.FAILED),
        (NatsServerError("nats-server 2.10 is too old"), ExitCode.FAILED),
        (ValueError("invalid workflow_id 'a b'"), ExitCode.USAGE),
    ],
)
def test_expected_errors_have_exit_codes(error: BaseException, code: ExitCode) -> None:
    translated = translate(error, servers=SERVERS)
    assert translated is not None
    assert code == translated.exit_code
    assert "\n" not in translated.message


def test_unexpected_errors_are_not_translated() -> None:
    assert translate(KeyError("x"), servers=SERVERS) is None


def test_messages_keep_only_the_first_line() -> None:
    translated = translate(WorkflowFailed("boom\nTraceback ...\n  more"), servers=SERVERS)
    assert translated is not None
    assert "workflow failed: boom" == translated.message


def test_unreachable_message_has_the_servers_and_a_hint() -> None:
    message = unreachable_message(["nats://a:1", "nats://b:2"], ConnectionRefusedError("no"))
    assert "nats://a:1, nats://b:2" in message
    assert "riverrun dev" in message and "RIVERRUN_SERVERS" in message
    # the persistence layer's own message already names the server: not repeated
    message = unreachable_message(SERVERS, StoreUnavailable("cannot connect to NATS at x."))
    assert message.startswith("cannot connect to NATS at x. Hint:")


def test_unwrap_finds_the_error_inside_task_group_groups() -> None:
    inner = WorkflowNotFound("x")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [inner])])
    assert inner is _unwrap(group)
