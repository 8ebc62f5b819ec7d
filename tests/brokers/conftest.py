"""Broker fixtures: a real Mosquitto, nats-server (JetStream) and nats-server MQTT per session.

Both start on free loopback ports with their own config and data under a session temp dir,
and stop at the end. A missing broker binary fails the run: nothing here is ever skipped.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

HERE = Path(__file__).parent
# Shared helpers live beside their own suites (cluster.py, conformance.py).
for folder in (HERE.parent / "integration", HERE.parent / "transports"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from brokerlab import Aedes, Mosquitto, NatsMqtt, NatsServer  # noqa: E402 - needs the paths above

T = TypeVar("T")
FACTOR = float(os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1"))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto broker for the whole session."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream for the whole session."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsMqtt]:
    """nats-server's MQTT listener (a second MQTT broker) for the whole session."""
    server = NatsMqtt(tmp_path_factory.mktemp("nats-mqtt"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def run() -> Callable[..., Any]:
    """Return ``run(coro, timeout=...)``: run ``coro`` on a fresh event loop, bounded in time."""

    def runner(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run(asyncio.wait_for(coro, timeout * FACTOR))

    return runner


@pytest.fixture(scope="session")
def aedes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aedes]:
    """Aedes (a third MQTT broker, Node.js) for the whole session."""
    broker = Aedes(tmp_path_factory.mktemp("aedes"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
