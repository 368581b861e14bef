"""riverrun.actors: the actor kernel.

Actors with bounded mailboxes, refs, supervision trees (one-for-one, one-for-all,
rest-for-one) with restart intensity and backoff, watch/terminated, and structured
cancellation, on anyio. See ``docs/actors.md``.
"""

from ._actor import Actor as Actor
from ._context import ActorContext as ActorContext
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._messages import Terminated as Terminated
from ._ref import (
    ActorRef as ActorRef,
    ActorStatistics as ActorStatistics,
    ActorStatus as ActorStatus,
)
from ._strategy import (
    Backoff as Backoff,
    StrategyKind as StrategyKind,
    SupervisorStrategy as SupervisorStrategy,
    equal_jitter as equal_jitter,
)
from ._system import ActorSystem as ActorSystem

__all__ = [
    "Actor",
    "ActorContext",
    "ActorRef",
    "ActorStatistics",
    "ActorStatus",
    "ActorSystem",
    "Backoff",
    "MailboxStatistics",
    "StrategyKind",
    "SupervisorStrategy",
    "Terminated",
    "equal_jitter",
]
