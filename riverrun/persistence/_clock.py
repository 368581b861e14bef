"""The system clock: real UTC time, real sleeps."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

__all__ = ["SystemClock"]


class SystemClock:
    """Implements the ``Clock`` protocol with the machine's clock (always UTC-aware)."""

    def __repr__(self) -> str:
        return "<SystemClock>"

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        """Return once ``now() >= deadline``.

        Raises:
            ValueError: ``deadline`` is naive (no tzinfo).
        """
        if deadline.tzinfo is None:
            raise ValueError("sleep_until() needs a timezone-aware deadline")
        # A loop, not one sleep: the loop's monotonic clock and the wall clock drift apart, and
        # a sleep may end a hair before the wall clock reaches the deadline.
        while (remaining := (deadline - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await anyio.sleep(remaining)
        await anyio.lowlevel.checkpoint()
