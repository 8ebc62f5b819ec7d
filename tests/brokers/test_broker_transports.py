"""The transport conformance suite on real brokers: MQTT pipes (Mosquitto, Aedes and
nats-server's MQTT listener) and NATS pipes."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from brokerlab import Aedes, Mosquitto, NatsMqtt, NatsServer
from cluster import free_port
from conformance import CHECKS, Check, Pair, flipped

from switchboard.errors import ConnectError
from switchboard.links.base import LinkOptions
from switchboard.transports import mqtt, nats


def _mqtt_pairs(
    broker: Mosquitto | Aedes | NatsMqtt,
) -> Callable[[], contextlib.AbstractAsyncContextManager[Pair]]:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Pair]:
        prefix = f"test/{uuid.uuid4().hex}"  # a per-test topic prefix (aiomqtt unique_topic)
        a = await mqtt.connect_pipe(broker.url, f"{prefix}/a", f"{prefix}/b", LinkOptions())
        b = await mqtt.connect_pipe(broker.url, f"{prefix}/b", f"{prefix}/a", LinkOptions())
        try:
            yield a, b
        finally:
            await a.aclose()
            await b.aclose()

    return make


def _nats_pairs(server: NatsServer) -> Callable[[], contextlib.AbstractAsyncContextManager[Pair]]:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Pair]:
        prefix = f"test.{uuid.uuid4().hex}"
        a = await nats.connect_pipe(server.url, f"{prefix}.a", f"{prefix}.b", LinkOptions())
        b = await nats.connect_pipe(server.url, f"{prefix}.b", f"{prefix}.a", LinkOptions())
        try:
            yield a, b
        finally:
            await a.aclose()
            await b.aclose()

    return make


@pytest.mark.parametrize("broker", ["mosquitto", "aedes", "nats_mqtt"])
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_mqtt_pipe_conforms(
    run: Callable[..., Any], request: pytest.FixtureRequest, broker: str, check: Check
) -> None:
    """An MQTT pipe through Mosquitto, Aedes or nats-server passes each check from both sides."""
    make = _mqtt_pairs(request.getfixturevalue(broker))
    run(check(make))
    run(check(flipped(make)))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_nats_pipe_conforms(run: Callable[..., Any], nats_server: NatsServer, check: Check) -> None:
    """A NATS pipe through nats-server passes each conformance check from both sides."""
    make = _nats_pairs(nats_server)
    run(check(make))
    run(check(flipped(make)))


def test_mqtt_pipe_connect_refused_is_connect_error(run: Callable[..., Any]) -> None:
    """Connecting to a port nobody listens on raises ConnectError, not a paho exception."""
    url = f"mqtt://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectError):
        run(mqtt.connect_pipe(url, "x/a", "x/b", LinkOptions()))


def test_nats_pipe_connect_refused_is_connect_error(run: Callable[..., Any]) -> None:
    """Connecting to a port nobody listens on raises ConnectError, not a nats-py exception."""
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectError):
        run(nats.connect_pipe(url, "x.a", "x.b", LinkOptions()))


def test_mqtt_url_parsing_rejects_credentials() -> None:
    """A broker URL with user:password in it is refused: credentials go in link options."""
    with pytest.raises(ConnectError, match="credentials"):
        mqtt.parse_url("mqtt://alice:hunter2@127.0.0.1:1883")
    assert mqtt.parse_url("mqtts://example.org").port == 8883
    assert nats.servers_of("nats://a:1,b") == ["nats://a:1", "nats://b:4222"]
