"""Fixtures for harness tests: real daemons (one device, or two in a group with a relay)."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness_kit import Device, Relay, group_of


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path (unix socket paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sbh-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def device(short_dir: Path) -> Iterator[Device]:
    """One device with its daemon running, in no group."""
    dev = Device(short_dir / "dev", "solo").start()
    dev.call("init", name="solo")
    yield dev
    dev.kill(signal.SIGTERM)


@pytest.fixture
def pair(short_dir: Path) -> Iterator[tuple[Device, Device]]:
    """Two devices in one group, joined through a relay on loopback."""
    relay = Relay(short_dir / "relay")
    with group_of(short_dir, "alpha", "beta", relay=relay) as (_, devices):
        yield devices[0], devices[1]
