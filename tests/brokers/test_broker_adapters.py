"""The broker adapters' own contracts: refused connections and URLs map to our errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cluster import free_port

from switchboard.errors import ConnectError
from switchboard.transports import mqtt, nats
from switchboard.transports.options import LinkOptions


def test_mqtt_connect_refused_is_connect_error(run: Callable[..., Any]) -> None:
    """Connecting to a port nobody listens on raises ConnectError, not a paho exception."""
    url = f"mqtt://127.0.0.1:{free_port()}"

    with pytest.raises(ConnectError):
        run(mqtt.connect(url, LinkOptions(), timeout=2))


def test_nats_connect_refused_is_connect_error(run: Callable[..., Any]) -> None:
    """Connecting to a port nobody listens on raises ConnectError, not a nats-py exception."""
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectError):
        run(nats.connect(url, LinkOptions(), timeout=2))


def test_mqtt_url_parsing_rejects_credentials() -> None:
    """A broker URL with user:password in it is refused: credentials go in link options."""
    with pytest.raises(ConnectError, match="credentials"):
        mqtt.parse_url("mqtt://alice:hunter2@127.0.0.1:1883")
    assert mqtt.parse_url("mqtts://example.org").port == 8883
    assert nats.servers_of("nats://a:1,b") == ["nats://a:1", "nats://b:4222"]
