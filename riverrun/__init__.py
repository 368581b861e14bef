"""riverrun: durable, event-sourced workflow actors on asyncio and NATS JetStream.

The public API. Everything here is re-exported from private modules; ``__all__`` is frozen by
``tests/test_public_api.py``.
"""

from ._errors import RiverrunError as RiverrunError

__all__ = ["RiverrunError"]
