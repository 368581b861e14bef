"""``patched()`` and ``deprecate_patch()``: versioning the code of runs already in flight.

A run decides each patch id once. Live, ``patched(id)`` is ``True`` and the run records a
``workflow.patched`` marker ``{patch_id}``; on replay it is ``True`` iff that marker was
recorded at this point of the history (right after the event that resumed the code), so a run
recorded by code without the patch replays onto the old path.

The interface with the state machine and the instance is narrow:

- the machine holds a ``PatchState`` (``machine.patches``) and applies ``workflow.patched``
  events with ``PatchState.applied``, which never raises: markers take no part in
  non-determinism detection;
- the instance replays through ``replay_order``, which tells the state, before each event,
  which markers directly follow it (one event of look-ahead, streaming kept);
- live, ``patched()`` leaves the id in ``PatchState.unrecorded``; the instance records those
  markers (``take_unrecorded``) before it records anything else, so a marker always precedes
  every event its decision leads to. A crash before the marker is written leaves a history
  that ends where the code decided: replay decides again, live, and records it then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from ..persistence import StoredEvent
from ._context import current_scope
from ._events import EventType

__all__ = ["PatchState", "deprecate_patch", "marker_data", "patched", "replay_order"]

MARKER = EventType.WORKFLOW_PATCHED.value


@attrs.define(eq=False)
class PatchState:
    """One run's patch decisions (held by its state machine)."""

    #: decisions so far: a run takes one path per patch id
    decided: dict[str, bool] = attrs.field(factory=dict)
    #: markers recorded right after the event being applied (replay look-ahead)
    following: list[str] = attrs.field(factory=list)
    #: True while replaying an event that more history follows: undecided ids are False
    mid_history: bool = False
    #: decided True live, marker not recorded yet
    unrecorded: list[str] = attrs.field(factory=list)

    def decide(self, patch_id: str) -> bool:
        if patch_id in self.decided:
            return self.decided[patch_id]
        if patch_id in self.following:
            self.following.remove(patch_id)
            result = True
        elif self.mid_history:
            result = False  # recorded by code before the patch: the old path
        else:
            result = True
            self.unrecorded.append(patch_id)
        self.decided[patch_id] = result
        return result

    def expect(self, following: list[str], *, mid_history: bool) -> None:
        """Before an event is replayed: the markers recorded directly after it."""
        self.following = following
        self.mid_history = mid_history

    def applied(self, data: Mapping[str, Any], seq: int) -> None:
        """A ``workflow.patched`` event was applied: tolerated whatever the code did (a
        deprecated patch, or a patch the code no longer asks about)."""
        self.decided.setdefault(str(data.get("patch_id")), True)

    def take_unrecorded(self) -> list[str]:
        taken, self.unrecorded = self.unrecorded, []
        return taken


def marker_data(patch_id: str) -> dict[str, Any]:
    return {"patch_id": patch_id}


async def replay_order(
    events: AsyncIterator[StoredEvent], state: PatchState
) -> AsyncIterator[StoredEvent]:
    """``events`` in order; before each other event, ``state`` learns the markers that
    directly follow it and whether more history follows them."""
    held: StoredEvent | None = None
    markers: list[StoredEvent] = []
    async for event in events:
        if event.type == MARKER and held is not None:
            markers.append(event)
            continue
        if held is not None:
            state.expect([_patch_id(m) for m in markers], mid_history=True)
            yield held
            for marker in markers:
                yield marker
        held, markers = event, []
    if held is not None:
        # the end of the history: what the code decides past the recorded markers is live
        state.expect([_patch_id(m) for m in markers], mid_history=False)
        yield held
        for marker in markers:
            yield marker
    state.expect([], mid_history=False)


def _patch_id(event: StoredEvent) -> str:
    return str(event.data.get("patch_id"))


def _checked(patch_id: object, what: str) -> str:
    if not isinstance(patch_id, str) or not patch_id:
        raise ValueError(f"{what} needs a non-empty string patch id, got {patch_id!r}")
    return patch_id


def _state(what: str) -> PatchState:
    scope = current_scope(what)
    state = getattr(scope, "patches", None)
    if not isinstance(state, PatchState):  # pragma: no cover - every machine has one
        raise RuntimeError(f"{what}: this workflow scope keeps no patch state")
    return state


def patched(patch_id: str) -> bool:
    """Whether this run takes the new code path of the change ``patch_id``.

    ``if patched("new-pricing"): ... else: ...`` keeps the old path for runs that were
    already past this point when the change was deployed. A run executing live takes the new
    path (``True``) and records a ``workflow.patched`` marker; replaying, the answer is
    whether that marker was recorded here. The first answer holds for the rest of the run.

    Raises:
        ValueError: ``patch_id`` is not a non-empty string.
        RuntimeError: called outside a workflow (``NotInWorkflowError``).
    """
    patch_id = _checked(patch_id, "patched()")
    return _state("patched()").decide(patch_id)


def deprecate_patch(patch_id: str) -> None:
    """Mark ``patch_id`` as retired: the code keeps only the new path.

    Records nothing; replay accepts a ``workflow.patched`` marker for it in older runs. Use
    it once no run that started before the patch is still in flight, then delete it once no
    run that recorded the marker is.

    Raises:
        ValueError: ``patch_id`` is not a non-empty string.
        RuntimeError: called outside a workflow (``NotInWorkflowError``).
    """
    patch_id = _checked(patch_id, "deprecate_patch()")
    _state("deprecate_patch()").decided.setdefault(patch_id, True)
