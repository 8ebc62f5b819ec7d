"""`switchboard ping` between two real daemons over every kind of link, and a peer killed."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokerlab import Aedes, Mosquitto, NatsMqtt, NatsServer, group_on
from cluster import Relay, timeout, wait_until

SERVERS = {"mqtt": Mosquitto, "aedes": Aedes, "nats": NatsServer, "nats-mqtt": NatsMqtt}


@pytest.fixture(params=["relay", *SERVERS])
def far_end(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh relay or broker of each kind; yields the link URL."""
    server: Relay | Mosquitto | Aedes | NatsServer
    server = Relay(tmp_path / "far") if request.param == "relay" else SERVERS[request.param](
        tmp_path / "far"
    )  # fmt: skip
    server.start()
    try:
        yield server.url
    finally:
        if isinstance(server, Relay):
            server.kill(signal.SIGTERM)
        else:
            server.stop()


def test_ping_over_every_link_and_a_killed_peer_fails_clearly(far_end: str, tmp_path: Path) -> None:
    """Two daemons ping each other through the CLI over the link; once one is killed with
    SIGKILL, a ping of it fails with one line (unreachable, or no answer in time), not a hang."""
    with group_on(tmp_path, far_end, "laptop", "server") as (a, b):
        b_short = b.short
        # The pong names the device as this one knows it: wait for b's name to arrive here.
        wait_until(lambda: any(peer["name"] == "server" for peer in a.call("status")["clock"]),
                   20, "laptop learnt the server's name")  # fmt: skip
        pong = a.cli_json("ping", b_short, "--count", "3", "--interval", "0", "--timeout", "20")
        assert (pong["device"], pong["name"], len(pong["rtt_ms"])) == (b_short, "server", 3)
        assert pong["link"].split("?")[0].rstrip("/") in far_end
        line = b.cli("ping", a.short, "--timeout", "20").stdout.strip()
        assert re.fullmatch(rf"pong from {a.short} \(laptop\) via \S+: [\d.]+ ms", line), line
        b.kill(signal.SIGKILL)
        failed = a.cli("ping", b_short, "--timeout", str(timeout(5)), check=False)
        assert failed.returncode == 1 and failed.stdout == ""
        assert re.fullmatch(
            rf"switchboard: device {b_short} (is unreachable: .+|did not answer the ping .+)\n",
            failed.stderr,
        ), failed.stderr


def test_link_off_shows_the_others_offline_at_once(far_end: str, tmp_path: Path) -> None:
    """A device whose link is switched off no longer shows the others online, nor their agents
    active, and a send to them says queued without waiting for receipts that cannot come."""
    with group_on(tmp_path, far_end, "laptop", "server") as (a, b):
        b.call("register", agent="sink")

        def server_seen() -> bool:
            online = {d["short"] for d in a.call("devices") if d["online"]}
            agents = {x["name"]: x["status"] for x in a.call("agents")}
            return b.short in online and agents.get("sink") == "active"

        wait_until(server_seen, 20, "laptop sees the server and its agent")
        a.call("link.set", on=False)
        assert not [d for d in a.call("devices") if d["online"] and not d["this"]]
        assert {x["name"]: x["status"] for x in a.call("agents")}["sink"] != "active"
        result = a.call("send", agent="ann", to=["@sink"], text="are you there", wait=30)
        assert result["result"] == "queued"
