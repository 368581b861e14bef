"""Fixtures shared by the persistence tests: the anyio backend, and a real S3 server (moto)."""

from __future__ import annotations

import pytest

# The contract suites live in a helper module; let pytest rewrite its asserts too.
pytest.register_assert_rewrite("tests.persistence.contract")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
