"""Supervisor strategies: which children restart, how often, and after what delay.

Design note: the strategy is a value owned by a supervisor and applied to all its children
(Akka's model; Erlang's ``{Strategy, Intensity, Period}``). Restart intensity is counted per
child: a child may fail ``max_restarts`` times within ``within`` seconds and be restarted each
time; its next failure in that window is one too many, and the supervisor itself fails with
:class:`~riverrun._errors.EscalationError`. Siblings restarted along with a failing child
(``one_for_all``, ``rest_for_one``) are not charged with a failure. The backoff before a
restart grows with the failing child's failure count in the window, so it resets once the
child has been healthy for ``within`` seconds.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import attrs

__all__ = ["Backoff", "StrategyKind", "SupervisorStrategy", "equal_jitter"]

_T = TypeVar("_T")


def equal_jitter(delay: float) -> float:
    """The default jitter: a random delay between ``delay / 2`` and ``delay``."""
    return delay / 2 + random.random() * delay / 2


def _no_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential backoff with jitter between restarts.

    The n-th failure within the intensity window waits
    ``jitter(min(maximum, base * multiplier ** (n - 1)))``, clamped to ``[0, maximum]``.
    ``Backoff(base=0)`` restarts at once, which is what tests want.

    Attributes:
        base: Delay before the first restart, in seconds.
        maximum: Upper bound of any delay, in seconds.
        multiplier: Growth factor per further failure.
        jitter: Maps the computed delay to the one used; inject ``lambda d: d`` for a
            deterministic delay.
    """

    base: float = attrs.field(default=0.1, validator=_no_negative)
    maximum: float = attrs.field(default=10.0, validator=_no_negative)
    multiplier: float = attrs.field(default=2.0)
    jitter: Callable[[float], float] = equal_jitter

    def __attrs_post_init__(self) -> None:
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")

    def delay(self, failures: int) -> float:
        """The delay before restarting a child that failed ``failures`` times (>= 1)."""
        if self.base == 0:
            return 0.0
        exponent = max(0, failures - 1)
        # Cap the exponent so that a long-lived flapping child cannot overflow the float.
        raw = min(self.maximum, self.base * self.multiplier ** min(exponent, 64))
        return min(self.maximum, max(0.0, self.jitter(raw)))


class StrategyKind(enum.Enum):
    """Which children a supervisor restarts when one of them fails."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: they depend on each other."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and the children spawned after it, which depend on it."""


@attrs.frozen(kw_only=True)
class SupervisorStrategy:
    """How a supervisor treats its children's failures.

    Build one with :meth:`one_for_one`, :meth:`one_for_all` or :meth:`rest_for_one`.

    Attributes:
        kind: Which children restart together.
        max_restarts: Failures of one child tolerated within ``within`` seconds; the next
            one escalates. ``0`` escalates at the first failure.
        within: The intensity window, in seconds.
        backoff: The delay before each restart.
    """

    kind: StrategyKind = StrategyKind.ONE_FOR_ONE
    max_restarts: int = attrs.field(default=3)
    within: float = attrs.field(default=5.0)
    backoff: Backoff = attrs.field(factory=Backoff)

    def __attrs_post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts!r}")
        if not self.within > 0:
            raise ValueError(f"within must be > 0 seconds, got {self.within!r}")

    @classmethod
    def one_for_one(
        cls, *, max_restarts: int = 3, within: float = 5.0, backoff: Backoff | None = None
    ) -> SupervisorStrategy:
        """Restart only the child that failed."""
        return cls._make(StrategyKind.ONE_FOR_ONE, max_restarts, within, backoff)

    @classmethod
    def one_for_all(
        cls, *, max_restarts: int = 3, within: float = 5.0, backoff: Backoff | None = None
    ) -> SupervisorStrategy:
        """Restart every child when one fails."""
        return cls._make(StrategyKind.ONE_FOR_ALL, max_restarts, within, backoff)

    @classmethod
    def rest_for_one(
        cls, *, max_restarts: int = 3, within: float = 5.0, backoff: Backoff | None = None
    ) -> SupervisorStrategy:
        """Restart the child that failed and every child spawned after it."""
        return cls._make(StrategyKind.REST_FOR_ONE, max_restarts, within, backoff)

    @classmethod
    def _make(
        cls, kind: StrategyKind, max_restarts: int, within: float, backoff: Backoff | None
    ) -> SupervisorStrategy:
        return cls(
            kind=kind,
            max_restarts=max_restarts,
            within=within,
            backoff=Backoff() if backoff is None else backoff,
        )

    def affected(self, children: Sequence[_T], failed: _T) -> list[_T]:
        """The children (in spawn order) to restart when ``failed`` fails."""
        if self.kind is StrategyKind.ONE_FOR_ONE:
            return [failed]
        if self.kind is StrategyKind.ONE_FOR_ALL:
            return list(children)
        return list(children[children.index(failed) :])
