"""Broker links over TLS and with logins, through real daemons: mqtts://, NATS TLS, NATS users.

The PKI (a CA, a server certificate for 127.0.0.1, a client certificate, an unrelated CA) is
generated per module with ``cryptography``; Mosquitto and nats-server run on free loopback
ports with TLS listeners. Every test also checks that no secret reaches ``status --json``,
error messages or the daemon's log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokerlab import NatsServer
from cluster import Device
from tls_brokers import Pki, TlsMosquitto, make_pki, nats_operator, nats_tls_block

MQTT_PASSWORD = "mqtt-pass-7f3a9c"
NATS_PASSWORD = "nats-pass-41be02"
WRONG_PASSWORD = "wrong-pass-d5e8"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, server and client certificates, and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mqtt_tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsMosquitto]:
    """Mosquitto on TLS, anonymous, no client certificate needed."""
    broker = TlsMosquitto(tmp_path_factory.mktemp("mqtt-tls"), pki)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def nats_tls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[NatsServer]:
    """nats-server (JetStream) on TLS that requires a client certificate."""
    server = NatsServer(tmp_path_factory.mktemp("nats-tls"), extra=nats_tls_block(pki, verify=True))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nats_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """nats-server (JetStream) that only lets user ``team`` in, with ``NATS_PASSWORD``."""
    users = f'authorization {{ users: [ {{ user: team, password: "{NATS_PASSWORD}" }} ] }}\n'
    server = NatsServer(tmp_path_factory.mktemp("nats-users"), extra=users)
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def _devices(tmp: Path, *names: str) -> Iterator[list[Device]]:
    devices = [Device(tmp / name, name) for name in names]
    for device in devices:
        device.env["SWITCHBOARD_LOG_LEVEL"] = "DEBUG"  # the most the log could ever leak
    try:
        for device in devices:
            device.start()
        yield devices
    finally:
        for device in devices:
            device.stop()


def _create_and_join(a: Device, b: Device, url: str, create: list[str], join: list[str]) -> None:
    """``group create`` on ``a`` with the ``create`` flags, ``join`` on ``b`` with ``join``."""
    out = a.cli("group", "create", "--relay", url, *create).stdout
    b.cli("join", out.strip().splitlines()[-1], *join)


def _both_ways(a: Device, b: Device) -> None:
    """Each device's agent sends to the other's, and both messages arrive, delivered."""
    b.call("register", agent="nova")
    a.call("register", agent="luna")
    a.wait_events(1, type="agent_registered", agent=f"nova:{b.short}")
    b.wait_events(1, type="agent_registered", agent=f"luna:{a.short}")
    assert a.call("send", agent="luna", to=["@nova"], text="over tls")["result"] == "delivered"
    assert b.call("send", agent="nova", to=["@luna"], text="and back")["result"] == "delivered"
    assert [m["text"] for m in b.call("inbox", agent="nova")] == ["over tls"]
    assert [m["text"] for m in a.call("inbox", agent="luna")] == ["and back"]


def _assert_no_secret(device: Device, *secrets: str, also: str = "") -> None:
    """No secret in ``status --json``, in ``also`` (an error message) or in the daemon log."""
    status = device.cli("status", "--json").stdout
    log = device.log_text
    if device.settings.log_path.exists():
        log += device.settings.log_path.read_text()
    assert log, "the daemon logged nothing"
    for secret in secrets:
        for where, text in (("status --json", status), ("the error", also), ("the log", log)):
            assert secret not in text, f"{secret!r} in {where}"


def _key_material(pki: Pki) -> list[str]:
    """The private keys' base64 lines: never to be shown or logged."""
    return [
        line
        for path in (pki.client_key, pki.server_key)
        for line in path.read_text().splitlines()
        if line and not line.startswith("-----")
    ]


def test_mqtts_custom_ca_messages_both_ways(tmp_path: Path, mqtt_tls: TlsMosquitto) -> None:
    """`group create --relay mqtts://... --tls-ca` and `join --tls-ca` carry messages both ways."""
    ca = ["--tls-ca", str(mqtt_tls.pki.ca)]
    with _devices(tmp_path, "laptop", "server") as (a, b):
        _create_and_join(a, b, mqtt_tls.url, ca, ca)
        _both_ways(a, b)
        link = a.cli_json("status")["groups"][0]["link"]
        assert (link["kind"], link["state"], link["url"]) == ("mqtt", "connected", mqtt_tls.url)


def test_mqtts_client_certificate_messages_both_ways(tmp_path: Path, pki: Pki) -> None:
    """On a broker that requires client certificates, devices with one exchange messages."""
    broker = TlsMosquitto(tmp_path / "broker", pki, require_certificate=True)
    broker.start()
    mtls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
            "--tls-key", str(pki.client_key)]  # fmt: skip
    try:
        with _devices(tmp_path, "laptop", "server") as (a, b):
            _create_and_join(a, b, broker.url, mtls, mtls)
            _both_ways(a, b)
            _assert_no_secret(a, *_key_material(pki))
            _assert_no_secret(b, *_key_material(pki))
    finally:
        broker.stop()


def test_mqtts_wrong_ca_is_one_clear_error_and_no_group(
    tmp_path: Path, mqtt_tls: TlsMosquitto
) -> None:
    """A broker certificate the given CA did not sign fails `group create`, keeping no group."""
    with _devices(tmp_path, "laptop") as (a,):
        result = a.cli("group", "create", "--relay", mqtt_tls.url,
                       "--tls-ca", str(mqtt_tls.pki.wrong_ca), check=False)  # fmt: skip
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "untrusted certificate" in lines[0] and "--tls-ca" in lines[0], lines[0]
        assert "Traceback" not in a.log_text and "untrusted certificate" in a.log_text
        assert a.call("status")["groups"] == []
        _assert_no_secret(a, *_key_material(mqtt_tls.pki), also=result.stderr)


def test_mqtts_missing_client_certificate_is_one_clear_error(tmp_path: Path, pki: Pki) -> None:
    """A broker that requires a client certificate we lack: one line naming it, and no group.

    TLS 1.3 lets the client's handshake finish before the broker checks for a certificate, so
    without the diagnosis this was a broker that "did not answer in time".
    """
    broker = TlsMosquitto(tmp_path / "broker", pki, require_certificate=True)
    broker.start()
    try:
        with _devices(tmp_path, "laptop") as (a,):
            result = a.cli("group", "create", "--relay", broker.url,
                           "--tls-ca", str(pki.ca), check=False)  # fmt: skip
            assert result.returncode == 1
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert "requires a client certificate" in lines[0], lines[0]
            assert "--tls-cert" in lines[0] and "--tls-key" in lines[0], lines[0]
            assert a.call("status")["groups"] == []
    finally:
        broker.stop()


def test_mqtts_password_file_over_tls(tmp_path: Path, pki: Pki) -> None:
    """A login from --password-file over mqtts:// works; the password shows up nowhere."""
    broker = TlsMosquitto(tmp_path / "broker", pki, users={"team": MQTT_PASSWORD})
    broker.start()
    secret = tmp_path / "password"
    secret.write_text(MQTT_PASSWORD + "\n")
    try:
        with _devices(tmp_path, "laptop", "server") as (a, b):
            ca = ["--tls-ca", str(pki.ca)]
            login = ["--username", "team", "--password-file", str(secret)]
            _create_and_join(a, b, broker.url, [*ca, *login], ca)
            _both_ways(a, b)
            _assert_no_secret(a, MQTT_PASSWORD)
            _assert_no_secret(b, MQTT_PASSWORD)
    finally:
        broker.stop()


@pytest.mark.parametrize("scheme", ["tls", "nats"])
def test_nats_tls_client_certificate_messages_both_ways(
    tmp_path: Path, pki: Pki, nats_tls: NatsServer, scheme: str
) -> None:
    """NATS over TLS with a client certificate (tls:// or nats:// plus --tls-*) works both ways."""
    url = f"{scheme}://127.0.0.1:{nats_tls.port}"
    mtls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
            "--tls-key", str(pki.client_key)]  # fmt: skip
    with _devices(tmp_path, "laptop", "server") as (a, b):
        _create_and_join(a, b, url, mtls, mtls)
        _both_ways(a, b)
        status = a.cli_json("status")["groups"][0]["link"]
        assert (status["kind"], status["state"]) == ("nats", "connected")
        _assert_no_secret(a, *_key_material(pki))
        _assert_no_secret(b, *_key_material(pki))


def test_nats_missing_client_certificate_is_one_clear_error(
    tmp_path: Path, pki: Pki, nats_tls: NatsServer
) -> None:
    """A NATS server that requires a client certificate we lack: one line naming it, no group."""
    with _devices(tmp_path, "laptop") as (a,):
        result = a.cli("group", "create", "--relay", f"tls://127.0.0.1:{nats_tls.port}",
                       "--tls-ca", str(pki.ca), check=False)  # fmt: skip
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "requires a client certificate" in lines[0], lines[0]
        assert a.call("status")["groups"] == []


def test_nats_wrong_ca_is_one_clear_error_and_no_group(
    tmp_path: Path, pki: Pki, nats_tls: NatsServer
) -> None:
    """A NATS server certificate the given CA did not sign fails `group create` clearly."""
    with _devices(tmp_path, "laptop") as (a,):
        result = a.cli("group", "create", "--relay", f"tls://127.0.0.1:{nats_tls.port}",
                       "--tls-ca", str(pki.wrong_ca), "--tls-cert", str(pki.client_cert),
                       "--tls-key", str(pki.client_key), check=False)  # fmt: skip
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "untrusted certificate" in lines[0], result.stderr
        assert a.call("status")["groups"] == []
        _assert_no_secret(a, *_key_material(pki), also=result.stderr)


def test_nats_password_file_messages_both_ways(tmp_path: Path, nats_users: NatsServer) -> None:
    """A NATS user login from --password-file works for both devices (the joiner via the invite)."""
    secret = tmp_path / "password"
    secret.write_text(NATS_PASSWORD + "\n")
    login = ["--username", "team", "--password-file", str(secret)]
    with _devices(tmp_path, "laptop", "server") as (a, b):
        _create_and_join(a, b, nats_users.url, login, [])
        _both_ways(a, b)
        _assert_no_secret(a, NATS_PASSWORD)
        _assert_no_secret(b, NATS_PASSWORD)


def test_nats_wrong_password_is_one_clear_error(tmp_path: Path, nats_users: NatsServer) -> None:
    """A refused NATS login fails `group create` with one clear line, keeping no group."""
    with _devices(tmp_path, "laptop") as (a,):
        a.env["SWITCHBOARD_BROKER_PASSWORD"] = WRONG_PASSWORD
        result = a.cli("group", "create", "--relay", nats_users.url, "--username", "team",
                       check=False)  # fmt: skip
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused the credentials" in lines[0], result.stderr
        assert a.call("status")["groups"] == []
        _assert_no_secret(a, WRONG_PASSWORD, NATS_PASSWORD, also=result.stderr)


def test_nats_creds_file_messages_both_ways(tmp_path: Path) -> None:
    """A user .creds file (JWT + nkey seed) on an operator-mode server works for both devices."""
    config, creds = nats_operator(tmp_path)
    server = NatsServer(tmp_path / "nats", extra=config)
    server.start()
    seed = next(line for line in creds.read_text().splitlines() if line.startswith("SU"))
    try:
        with _devices(tmp_path, "laptop", "server") as (a, b):
            flags = ["--nats-creds", str(creds)]
            _create_and_join(a, b, server.url, flags, flags)
            _both_ways(a, b)
            _assert_no_secret(a, seed)
            _assert_no_secret(b, seed)
            # Without the .creds file (the invite does not carry it) the server refuses a joiner.
            late = Device(tmp_path / "late", "late").start()
            try:
                result = late.cli("join", a.call("invite")["invite"], check=False)
                assert result.returncode == 1
                assert "refused the credentials" in result.stderr, result.stderr
                assert late.call("status")["groups"] == []
            finally:
                late.stop()
    finally:
        server.stop()
