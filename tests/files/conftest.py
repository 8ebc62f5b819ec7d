"""Shared files between real daemons: a relay, the session's Mosquitto and nats-server.

The helpers of the integration and broker suites (cluster.py, brokerlab.py) are put on the
path; the brokers start once per session on free loopback ports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
for folder in (HERE.parent / "integration", HERE.parent / "brokers", HERE.parent / "transports"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from brokerlab import Mosquitto, NatsServer  # noqa: E402 - needs the paths above


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
