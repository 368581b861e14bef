"""Queues and partitions: which partition of its queue a workflow id belongs to.

Design note. A queue has a fixed number of partitions, one setting for the whole namespace
(stored once, see ``OwnershipStore.partitions``), so every client and worker maps an id to the
same partition. The hash is CRC-32 of the id's UTF-8 bytes: stable across processes, Python
versions and machines (``hash()`` is salted per process), and cheap.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

__all__ = ["DEFAULT_PARTITIONS", "DEFAULT_QUEUE", "check_partitions", "check_queue", "partition_of"]

DEFAULT_QUEUE: Final = "default"
DEFAULT_PARTITIONS: Final = 16
MAX_PARTITIONS: Final = 4096

_QUEUE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def partition_of(workflow_id: str, partitions: int) -> int:
    """The partition (``0 <= p < partitions``) that ``workflow_id`` belongs to."""
    return zlib.crc32(workflow_id.encode()) % partitions


def check_queue(queue: str) -> str:
    """Validate a queue name: 1-64 characters of ``[A-Za-z0-9_-]`` (one subject token)."""
    if not isinstance(queue, str) or not _QUEUE.fullmatch(queue):
        raise ValueError(
            f"queue must be 1-64 characters of letters, digits, '_' or '-', got {queue!r}"
        )
    return queue


def check_partitions(partitions: int) -> int:
    if not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be an int from 1 to {MAX_PARTITIONS}, got {partitions!r}")
    return partitions
