"""What only the MQTT link does: catch-up served by devices, presence, mqtt-public, logins.

Catch-up and presence run on three brokers: Mosquitto, Aedes and nats-server's MQTT listener.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from brokerlab import Aedes, Mosquitto, NatsMqtt, converged, group_on
from cluster import Device, free_port, timeout

from switchboard.links.mqtt import PUBLIC_ENV

BROKERS = {"mosquitto": Mosquitto, "aedes": Aedes, "nats-mqtt": NatsMqtt}
MqttBroker = Mosquitto | Aedes | NatsMqtt


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> MqttBroker:
    """A fresh MQTT broker of each kind (not started: some tests restart it)."""
    made: MqttBroker = BROKERS[request.param](tmp_path / "broker")
    return made


def _status(device: Device, address: str) -> str | None:
    shown = {x["address"]: x["status"] for x in device.call("agents")}
    return shown.get(address)


def _wait_status(device: Device, address: str, status: str, seconds: float = 30) -> None:
    """Look at ``address``'s shown status until it is ``status`` (fail after ``seconds``)."""
    deadline = time.monotonic() + timeout(seconds)
    idle = threading.Event()
    while _status(device, address) != status:
        assert time.monotonic() < deadline, f"{address} not {status} within {seconds} s"
        idle.wait(0.2)


def test_mqtt_catch_up_served_by_another_device(tmp_path: Path, broker: MqttBroker) -> None:
    """With the origin offline and the broker's queue gone, an online device serves catch-up."""
    broker.start()
    try:
        with group_on(tmp_path, broker.url, "origin", "holder", "late") as (a, b, c):
            c.call("register", agent="vega")
            a.wait_events(1, type="agent_registered", agent=f"vega:{c.short}")
            origin = f"luna:{a.short}"
            c.stop()
            for n in range(30):
                a.call("send", agent="luna", to=["@vega"], text=f"c{n}", wait=0)
            b.wait_events(30, type="message_posted", agent=origin)
            a.stop()
            broker.stop(signal.SIGKILL)
            broker.forget()  # every queued message is gone: only devices can serve catch-up
            broker.start()
            c.start()
            events = c.wait_events(30, 60, type="message_posted", agent=origin)
            assert [e["data"]["text"] for e in events] == [f"c{n}" for n in range(30)]
            a.start()
            converged(a, b, c)
    finally:
        broker.stop()


def test_mqtt_speaks_5_where_the_broker_does(tmp_path: Path, broker: MqttBroker) -> None:
    """MQTT 5 on Mosquitto; 3.1.1 after nats-server's listener refuses 5; messages flow on both."""
    broker.start()
    try:
        with group_on(tmp_path, broker.url, "a", "b") as (a, b):
            expected = "MQTT 5" if isinstance(broker, Mosquitto) else "MQTT 3.1.1"
            assert [link["protocol"] for link in a.call("link.status")] == [expected]
            assert f"mqtt ({expected}) link" in a.cli("status").stdout
            b.call("register", agent="nova")
            a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
            assert a.call("send", agent="luna", to=["@nova"], text="hi")["result"] == "delivered"
    finally:
        broker.stop()


def test_mqtt_last_will_marks_a_killed_device_offline(tmp_path: Path, broker: MqttBroker) -> None:
    """A device killed with SIGKILL is shown offline through its last will; back when restarted."""
    broker.start()
    try:
        with group_on(
            tmp_path, broker.url, "watcher", "victim", env={"SWITCHBOARD_OFFLINE_TIMEOUT": "0"}
        ) as (a, b):
            b.call("register", agent="nova")
            a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
            nova = f"nova:{b.short}"
            _wait_status(a, nova, "active")
            b.kill(signal.SIGKILL)
            _wait_status(a, nova, "offline", seconds=60)  # the will fires after 1.5 keepalives
            b.start()
            _wait_status(a, nova, "active")
            assert a.call("send", agent="luna", to=["@nova"], text="back?")["result"] == "delivered"
    finally:
        broker.stop()


def test_mqtt_public_keeps_the_first_broker_that_works(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """`--relay mqtt-public` skips a dead broker and records the first that accepts us."""
    dead = f"mqtt://127.0.0.1:{free_port()}"
    device = Device(tmp_path / "a", "a")
    device.env[PUBLIC_ENV] = f"{dead},{mosquitto.url}"
    device.start()
    try:
        created = device.call("group.create", name="pub", relay="mqtt-public")
        assert created["group"]["link"]["url"] == mosquitto.url
        assert created["group"]["link"]["kind"] == "mqtt"
        status = device.cli_json("status")
        assert status["groups"][0]["link"]["state"] == "connected"
    finally:
        device.stop()


def test_mqtt_login_from_password_file_and_invite(tmp_path: Path) -> None:
    """A group on a broker with a login: create reads the password file, join uses the invite."""
    broker = Mosquitto(tmp_path / "broker", users={"team": "s3cret-pass"})
    broker.start()
    secret = tmp_path / "password"
    secret.write_text("s3cret-pass\n")
    a, b = Device(tmp_path / "a", "a"), Device(tmp_path / "b", "b")
    try:
        a.start()
        b.start()
        out = a.cli("group", "create", "--relay", broker.url, "--username", "team",
                    "--password-file", str(secret)).stdout  # fmt: skip
        assert "s3cret-pass" not in out
        b.cli("join", out.strip().splitlines()[-1])
        b.call("register", agent="nova")
        a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
        assert a.call("send", agent="luna", to=["@nova"], text="hi")["result"] == "delivered"
        status = a.cli("status").stdout
        assert "mqtt (MQTT 5) link" in status and "s3cret-pass" not in status
    finally:
        a.stop()
        b.stop()
        broker.stop()


def test_mqtt_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    """A refused broker login fails `group create` with one clear line, keeping no group."""
    broker = Mosquitto(tmp_path / "broker", users={"team": "right"})
    broker.start()
    device = Device(tmp_path / "a", "a")
    device.env["SWITCHBOARD_BROKER_PASSWORD"] = "wrong"
    try:
        device.start()
        result = device.cli("group", "create", "--relay", broker.url, "--username", "team",
                            check=False)  # fmt: skip
        assert result.returncode == 1
        assert "refused the login" in result.stderr and "wrong" not in result.stderr
        assert device.call("status")["groups"] == []
    finally:
        device.stop()
        broker.stop()
