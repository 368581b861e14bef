"""riverrun.testing: the tools riverrun's own tests use, for yours.

- ``open_test_runtime``: an in-memory runtime on a time-skipping ``VirtualClock``.
- ``ContinueAsNewForcer``: continue a workflow as new at chosen points (the CAN-fuzz).
- ``nats_server`` / ``unique_namespace``: a real embedded nats-server for a test session.
- ``wait_until``: await a condition on a workflow running elsewhere.
"""

from ._clock import VirtualClock as VirtualClock
from ._env import open_test_runtime as open_test_runtime, wait_until as wait_until
from ._forcing import ContinueAsNewForcer as ContinueAsNewForcer
from ._nats import nats_server as nats_server, unique_namespace as unique_namespace

__all__ = [
    "ContinueAsNewForcer",
    "VirtualClock",
    "nats_server",
    "open_test_runtime",
    "unique_namespace",
    "wait_until",
]
