"""Bench case: relay restart to first delivery, beside a fresh connect measured in the same run.

A relay and two daemons (A, B) run as their own processes. Each cycle kills the relay
(SIGKILL), sends a message A -> B while it is down (it is queued in A's log), starts the relay
again on the same port and data after a second down (``--down``), and times from the relay's
"listening" line to the message's arrival in B's log. Both daemons must notice the relay is
back (their reconnect backoff), redo the handshake, and A must push what it queued. The floor
is a fresh connect: a light client's WebSocket connect plus handshake to the same relay, the
least any device needs once the relay listens.

``run.py`` calls ``measure``; ``python bench/restart.py`` runs this case alone. Printed, never
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Device, Relay

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.daemon.client import Client
from switchboard.errors import DaemonUnavailable

PAYLOAD = 200


async def fresh_connect(url: str, keys: GroupKeys, *, create: bool = False) -> float:
    """Seconds from opening a WebSocket to ``url`` to an established session (a new device)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    from switchboard import transports  # noqa: PLC0415
    from switchboard.crypto import public_bytes  # noqa: PLC0415
    from switchboard.ids import device_id_from_public_key  # noqa: PLC0415
    from switchboard.proto.session import Established, Role, SyncSession  # noqa: PLC0415

    identity = Ed25519PrivateKey.generate()
    device = device_id_from_public_key(public_bytes(identity))
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    transport = await transports.connect(url, timeout=30)
    session = SyncSession(
        Role.CLIENT, device, os.urandom(32), loop.time(), group=keys.group,
        group_auth=keys.auth, identity=identity, create=create,
    )  # fmt: skip
    session.start()
    try:
        while True:
            for frame in session.frames_to_send():
                await transport.send(frame)
            if any(isinstance(e, Established) for e in session.events_received()):
                return time.perf_counter() - start
            if session.close_expected():
                raise SystemExit(f"bench: fresh connect failed: {session.cause}")
            session.receive_frame(await transport.receive())
    finally:
        await transport.aclose()


class Arrivals:
    """Follow B's log in a thread; record when each message text first arrives."""

    def __init__(self, b: Device) -> None:
        self.times: dict[str, float] = {}
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(b,), daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _follow(self, b: Device) -> None:
        with contextlib.suppress(DaemonUnavailable), Client.open(b.settings.socket_path) as client:
            self._ready.set()
            for item in client.stream("events.follow", {"type": "message_posted"}, duration=600):
                now = time.perf_counter()
                with self._cond:
                    self.times.setdefault(item["data"]["text"].rstrip("."), now)
                    self._cond.notify_all()

    def wait(self, key: str, limit: float = 60) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.times, timeout=limit):
                raise SystemExit(f"bench: {key} did not arrive within {limit} s")
            return self.times[key]


def measure(relay: Relay, a: Device, b: Device, cycles: int, down: float) -> dict[str, Any]:
    """Restart ``relay`` ``cycles`` times; return delivery and fresh-connect figures (ms).

    The relay stays down at least ``down`` seconds each time (a restart, a deploy); the time
    its process takes to start comes on top.

    ``a`` and ``b`` are daemons of one group on ``relay``, with agents ``luna`` on A and
    ``nova`` on B.
    """
    arrivals = Arrivals(b)
    floor_keys = GroupKeys.derive(secrets.token_hex(13), new_group_secret())
    asyncio.run(fresh_connect(relay.url, floor_keys, create=True))  # registers its group
    deliveries, floors, outages = [], [], []
    with Client.open(a.settings.socket_path) as client:
        for n in range(cycles):
            killed = time.perf_counter()
            relay.kill()
            key = f"restart{n:04d}"
            text = key.ljust(PAYLOAD, ".")
            client.call("send", {"agent": "luna", "to": ["@nova"], "text": text, "wait": 0})
            time.sleep(max(0.0, killed + down - time.perf_counter()))
            relay.start()
            listening = time.perf_counter()
            outages.append(listening - killed)
            deliveries.append(arrivals.wait(key) - listening)
            floors.append(asyncio.run(fresh_connect(relay.url, floor_keys)))
            time.sleep(0.5)  # let both links settle before the next kill
    return {
        "median_ms": statistics.median(deliveries) * 1e3,
        "max_ms": max(deliveries) * 1e3,
        "samples_ms": [round(d * 1e3, 1) for d in deliveries],
        "floor_fresh_connect_ms": statistics.median(floors) * 1e3,
        "outage_median_ms": statistics.median(outages) * 1e3,
        "cycles": cycles,
    }


def report(result: dict[str, Any]) -> str:
    """One line per figure, with the ratio to the floor."""
    floor = result["floor_fresh_connect_ms"]
    return (
        f"relay restart -> first delivery  median {result['median_ms']:.0f} ms  "
        f"max {result['max_ms']:.0f} ms  ({result['cycles']} cycles: {result['samples_ms']}; "
        f"relay down {result['outage_median_ms']:.0f} ms each, median)\n"
        f"  floor: fresh connect + handshake {floor:.1f} ms  -> ratio "
        f"{result['median_ms'] / floor:.1f}x (median), {result['max_ms'] / floor:.1f}x (max)"
    )


def setup(root: Path) -> tuple[Relay, Device, Device]:
    """A relay and two daemons in one group, luna on A and nova on B, each seeing the other."""
    relay = Relay(root / "relay").start()
    a = Device(root / "a", "a").start()
    b = Device(root / "b", "b").start()
    pair(relay, a, b)
    return relay, a, b


def pair(relay: Relay, a: Device, b: Device) -> None:
    """Put running daemons A and B in one group on ``relay``, luna on A and nova on B, and
    wait until each sees the other's agent."""
    invite = a.call("group.create", name="bench", relay=relay.url)["invite"]
    b.call("join", invite=invite)
    b.call("register", agent="nova")
    a.call("register", agent="luna")
    b.wait_events(1, type="agent_registered", agent="luna")
    a.wait_events(1, type="agent_registered", agent="nova")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5, help="relay restarts (default 5)")
    parser.add_argument("--down", type=float, default=1.0, help="seconds down (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        relay, a, b = setup(Path(tmp))
        try:
            print(report(measure(relay, a, b, args.cycles, args.down)))
        finally:
            for device in (a, b):
                device.stop()
            relay.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
