"""The riverrun exception tree.

Every error riverrun raises on purpose derives from :class:`RiverrunError`; each layer owns
one subtree. Where a builtin exception fits, the error inherits it too, so that
``except TimeoutError`` or ``except LookupError`` keep working for callers who know nothing
of riverrun::

    RiverrunError
    ├── ActorError                         riverrun.actors
    │   ├── ActorNotFound (LookupError)
    │   ├── ActorStopped                   the actor is gone; tell/ask cannot be delivered
    │   ├── MailboxFull                    tell_nowait on a full mailbox
    │   ├── AskTimeout (TimeoutError)
    │   └── EscalationError                restart intensity exceeded; the failure escalates
    ├── PersistenceError                   riverrun.persistence
    │   ├── CodecError (ValueError)        bytes that do not decode, values that do not encode
    │   ├── ConcurrencyConflict            an append/CAS lost against another writer
    │   ├── StoreUnavailable (ConnectionError)   the store cannot be reached; retryable
    │   ├── StorePermissionDenied (PermissionError)   NATS refused the credentials or a subject
    │   ├── StoreTLSError                  the TLS handshake with NATS failed (untrusted server
    │   │                                  certificate, or no client certificate given)
    │   ├── IncompatibleStoreConfig        an existing stream/bucket with settings we cannot use
    │   ├── NotFoundInStore (LookupError)  a payload, snapshot or record that is not there
    │   └── NatsServerError                the embedded nats-server cannot start, or is too old
    └── WorkflowError                      riverrun.runtime
        ├── WorkflowNotRegistered (LookupError)
        ├── WorkflowNotFound (LookupError)
        ├── WorkflowAlreadyRunning
        ├── WorkflowNotRunning             a signal to a chain that has ended
        ├── WorkflowFailed                 handle.result() of a run that failed
        ├── NonDeterminismError            replay diverged from the recorded history
        ├── SerializationError (TypeError) an argument or result the codec cannot carry
        ├── NotInWorkflowError (RuntimeError)   a workflow-only call made outside a workflow
        ├── RuntimeClosed (RuntimeError)   the runtime was closed, or not started yet
        └── CancellationError              the workflow (or step) was cancelled

``ContinueAsNew`` is not an error: it derives from ``BaseException`` (like
``asyncio.CancelledError``) so that ``except Exception`` in workflow code cannot swallow it.

This module imports nothing but the standard library, so that every layer, including
``riverrun.actors``, may import it.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "ActorNotFound",
    "ActorStopped",
    "AskTimeout",
    "CancellationError",
    "CodecError",
    "ConcurrencyConflict",
    "EscalationError",
    "IncompatibleStoreConfig",
    "MailboxFull",
    "NatsServerError",
    "NonDeterminismError",
    "NotFoundInStore",
    "NotInWorkflowError",
    "PersistenceError",
    "RiverrunError",
    "RuntimeClosed",
    "SerializationError",
    "StorePermissionDenied",
    "StoreTLSError",
    "StoreUnavailable",
    "WorkflowAlreadyRunning",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowLoopError",
    "WorkflowNotFound",
    "WorkflowNotRegistered",
    "WorkflowNotRunning",
]


class RiverrunError(Exception):
    """Base class of every error riverrun raises on purpose."""


# -- actors -------------------------------------------------------------------------------


class ActorError(RiverrunError):
    """Base class of the actor kernel's errors."""


class ActorNotFound(ActorError, LookupError):
    """No live actor has that name."""


class ActorStopped(ActorError):
    """The actor has stopped; the message cannot be delivered."""


class MailboxFull(ActorError):
    """``tell_nowait`` found the bounded mailbox full. Use ``tell`` to wait for room."""


class AskTimeout(ActorError, TimeoutError):
    """``ask`` got no reply within its timeout."""


class EscalationError(ActorError):
    """A child failed more often than its supervisor's restart intensity allows."""


# -- persistence --------------------------------------------------------------------------


class PersistenceError(RiverrunError):
    """Base class of the persistence layer's errors."""


class CodecError(PersistenceError, ValueError):
    """A value could not be encoded, or stored bytes could not be decoded."""


class ConcurrencyConflict(PersistenceError):
    """Another writer appended or updated first; reload and decide again."""


class StoreUnavailable(PersistenceError, ConnectionError):
    """The store could not be reached or did not answer in time. Safe to retry."""


class StorePermissionDenied(PersistenceError, PermissionError):
    """The NATS server refused: wrong credentials, or this user may not use ``subject``.

    Not retryable: retrying cannot help until the user's permissions (or the credentials)
    are fixed. ``subject`` is the subject refused, ``None`` when the credentials were.
    """

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class StoreTLSError(PersistenceError):
    """The TLS handshake with NATS failed: the server's certificate is not trusted (give the
    CA that signed it), or the server wants a client certificate (give one). Not retryable."""


class IncompatibleStoreConfig(PersistenceError):
    """A stream or bucket exists with settings riverrun cannot use."""


class NotFoundInStore(PersistenceError, LookupError):
    """The payload, snapshot or record asked for is not in the store."""


class NatsServerError(PersistenceError):
    """The embedded nats-server could not be found, started, or is too old."""


# -- runtime ------------------------------------------------------------------------------


class WorkflowError(RiverrunError):
    """Base class of the workflow runtime's errors."""


class WorkflowNotRegistered(WorkflowError, LookupError):
    """The workflow name is not registered with this runtime."""


class WorkflowNotFound(WorkflowError, LookupError):
    """No workflow or run has that id."""


class WorkflowAlreadyRunning(WorkflowError):
    """A workflow with that id is already running."""


class WorkflowFailed(WorkflowError):
    """The workflow chain ended in failure; ``cause`` describes the recorded error."""


class NonDeterminismError(WorkflowError):
    """Replaying the recorded history took a different path than the workflow code."""


class SerializationError(WorkflowError, TypeError):
    """An argument or result cannot be serialized; the message names the offending path."""


class NotInWorkflowError(WorkflowError, RuntimeError):
    """A call that only works inside a running workflow was made outside one."""


class WorkflowLoopError(WorkflowError, RuntimeError):
    """Workflow code asked its deterministic event loop for I/O, threads or real time."""


class RuntimeClosed(WorkflowError, RuntimeError):
    """The runtime is not running (closed, or not entered yet)."""


class CancellationError(WorkflowError):
    """The workflow was cancelled (also raised by ``handle.result()`` of a cancelled chain)."""


class WorkflowNotRunning(WorkflowError):
    """The workflow chain has ended, so a signal sent to it would never be delivered.

    ``workflow_id``, ``run_id`` (its last run) and ``status`` (its final status, a
    ``RunStatus`` value such as ``"completed"``) say which chain and how it ended.
    """

    def __init__(self, message: str, *, workflow_id: str, run_id: str, status: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.status = status
