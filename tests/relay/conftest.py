"""Fixtures for relay tests: an event-loop runner with a scaled timeout, and a fresh group."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from relay_client import TIMEOUT_FACTOR

from switchboard.crypto import new_group_secret

T = TypeVar("T")

DEFAULT_TEST_TIMEOUT = 20.0


@pytest.fixture
def run() -> Callable[..., Any]:
    """Return ``run(coro, timeout=...)``: run ``coro`` on a fresh event loop, bounded in time."""

    def runner(coro: Coroutine[Any, Any, T], timeout: float = DEFAULT_TEST_TIMEOUT) -> T:
        return asyncio.run(asyncio.wait_for(coro, timeout * TIMEOUT_FACTOR))

    return runner


@pytest.fixture
def group() -> tuple[str, bytes]:
    """Return a fresh (group id, group secret)."""
    return secrets.token_hex(13), new_group_secret()
