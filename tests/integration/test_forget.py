"""``device forget``: the group's keys rotate, the forgotten device reads and writes nothing new,
and the devices kept converge, one that was offline during the rotation included.

Real daemons, a real relay (``switchboard relay serve``), Mosquitto and nats-server; the bytes the
relay holds are read from its own SQLite file.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster import Device, Relay, wait_until

sys.path.insert(0, str(Path(__file__).parent.parent / "brokers"))
from brokerlab import Mosquitto, NatsServer, converged, group_on, log_keys

from switchboard.crypto import GroupKeys
from switchboard.errors import TamperedEnvelope
from switchboard.keyring import KID_SIZE, Keyring
from switchboard.proto.frames import Envelope

SERVERS = {"relay": Relay, "mqtt": Mosquitto, "nats": NatsServer}


@pytest.fixture(params=list(SERVERS))
def far_end(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Relay | Mosquitto | NatsServer]:
    """A fresh relay, Mosquitto or nats-server (JetStream)."""
    server: Relay | Mosquitto | NatsServer = SERVERS[request.param](tmp_path / "far")
    server.start()
    try:
        yield server
    finally:
        if isinstance(server, Relay):
            server.kill(signal.SIGTERM)
        else:
            server.stop()


def _secret(device: Device) -> tuple[str, bytes]:
    with sqlite3.connect(device.settings.home / "switchboard.db") as conn:
        group, secret = conn.execute("SELECT group_id, secret FROM groups").fetchone()
    return group, secret


def _wait(what: str, seconds: float, condition: Callable[[], object]) -> None:
    wait_until(condition, seconds, what)


def _keys_of(device: Device) -> set[tuple[str, int]]:
    return set(log_keys(device))


def _send(device: Device, agent: str, text: str) -> None:
    """A message from ``agent`` to the ``sink`` agent of the first device (``_sinks``)."""
    device.cli("send", "@sink", "--", text, agent=agent)


def _sinks(*devices: Device) -> None:
    """An agent on each device to address messages to, known to all."""
    for device in devices:
        device.call("register", agent="sink")


def test_forget_rotates_keys_and_every_kept_device_converges(
    far_end: Relay | Mosquitto | NatsServer, tmp_path: Path
) -> None:
    """Forget ``lost``: it is refused (relay) or ignored (broker), reads nothing written
    afterwards, and laptop, desk and an offline device converge without loss or duplicates,
    also over what desk wrote while the rotation ran and what the offline one wrote offline."""
    with group_on(tmp_path, far_end.url, "laptop", "desk", "lost", "away") as devices:
        laptop, desk, lost, away = devices
        _sinks(*devices)
        for device in devices:
            device.wait_events(4, type="device_joined")
            device.wait_events(4, type="agent_registered")
        _send(lost, "mallory", "before the rotation")
        ids = {d.name: d.call("status")["device"]["id"] for d in devices}
        converged(*devices)
        group, old_secret = _secret(lost)
        # away goes offline and writes meanwhile; desk writes while the rotation runs.
        away.call("link.set", on=False)
        for n in range(3):
            _send(away, "ada", f"offline {n}")
        writing = threading.Thread(
            target=lambda: [_send(desk, "bob", f"during {n}") for n in range(8)]
        )
        writing.start()
        result = laptop.cli_json("device", "forget", "lost")
        writing.join()
        assert (result["forgotten"], result["already"], result["name"]) == (True, False, "lost")
        rekey = laptop.wait_events(1, type="group_rekeyed")[0]
        assert set(rekey["data"]["forgotten"]) == {ids["lost"]}
        assert set(rekey["data"]["secrets"]) == {ids[n] for n in ("laptop", "desk", "away")}
        desk.wait_events(1, type="group_rekeyed")
        seq_after = {name: len(desk.call("events", where=f"origin = '{ids[name]}'"))
                     for name in ("laptop", "desk")}  # fmt: skip
        for n in range(3):
            _send(laptop, "ann", f"after {n}")
            _send(desk, "bob", f"after {n}")
        away.call("link.set", on=True)
        kept = converged(laptop, desk, away)
        texts = {e["data"].get("text") for e in away.call("events", type="message_posted")}
        assert {f"after {n}" for n in range(3)} | {f"during {n}" for n in range(8)} <= texts
        assert {f"offline {n}" for n in range(3)} <= {
            e["data"].get("text") for e in laptop.call("events", type="message_posted")
        }
        # Nothing of lost's after its cut-off, anywhere kept.
        # (A device kept that stored some of lost's events before it learned of the
        # rotation says so, forgotten_held, and the cut-off rises to them everywhere.)
        held = [e["data"]["seq"] for e in laptop.call("events", type="forgotten_held")]
        cutoff = max([rekey["data"]["forgotten"][ids["lost"]], *held])
        assert not [k for k in kept if k[0] == ids["lost"] and k[1] > cutoff]
        # lost holds nothing written after the rotation.
        held = _keys_of(lost)
        for name in ("laptop", "desk"):
            later = {k for k in kept if k[0] == ids[name] and k[1] > seq_after[name]}
            assert later and not later & held
        # It is gone from devices and agents on the devices kept.
        for device in (laptop, desk, away):
            _wait("lost still listed", 30, lambda d=device: ids["lost"] not in
                  {row["id"] for row in d.cli_json("devices")})  # fmt: skip
            assert not [a for a in device.cli_json("agents") if a["device"] == lost.short]
        # The keys survive a restart: laptop still reads and writes with the new one.
        laptop.stop()
        laptop.start()
        _send(laptop, "ann", "after the restart")
        converged(laptop, desk, away)
        if isinstance(far_end, Relay):
            _send(lost, "mallory", "written after being forgotten")  # refused at the relay
            _check_relay(far_end, lost, group, old_secret, ids, seq_after, tmp_path)
            converged(laptop, desk, away)
            assert not [k for k in log_keys(laptop) if k[0] == ids["lost"] and k[1] > cutoff]
        else:
            _check_broker(lost, (laptop, desk, away), ids["lost"], cutoff)


def _check_broker(lost: Device, kept: tuple[Device, ...], lost_id: str, cutoff: int) -> None:
    """A broker lets lost in (it checks its own logins, not the group's key): lost stopped its
    link on learning it was forgotten; turned on again and writing, as a device that ignores
    that would, its events reach the devices kept, which refuse them."""
    # lost learns from the rotation event, which it opens only if it opened laptop's events
    # before it: a receipt laptop wrote just before rotating but sent after it once went under
    # the new key, and lost never learned (``Keyring.sealing_key`` now keeps it under the old).
    _wait("lost did not stop its link", 30, lambda: lost.call("link.status")[0]["state"] == "off")
    lost.call("link.set", on=True)
    _send(lost, "mallory", "written after being forgotten")
    _wait(
        "lost's message was never refused",
        30,
        lambda: any(d.call("link.status")[0]["forged"] for d in kept),
    )
    for device in kept:
        assert not [k for k in log_keys(device) if k[0] == lost_id and k[1] > cutoff]


def test_two_devices_forgetting_at_once_both_take_effect(
    far_end: Relay | Mosquitto | NatsServer, tmp_path: Path
) -> None:
    """laptop forgets x while desk forgets y: the relay orders them (the second goes again
    from the first), a broker does not (the smaller key id wins and desk or laptop forgets
    again from it). Either way both are forgotten, the two kept converge, and neither x nor y
    holds what is written afterwards."""
    with group_on(tmp_path, far_end.url, "laptop", "desk", "x", "y") as devices:
        laptop, desk, x, y = devices
        _sinks(*devices)
        for device in devices:
            device.wait_events(4, type="agent_registered")
        converged(*devices)
        ids = {d.name: d.call("status")["device"]["id"] for d in devices}
        results: dict[str, dict[str, object]] = {}

        def forget(device: Device, name: str) -> None:
            results[name] = device.cli_json("device", "forget", name)

        threads = [
            threading.Thread(target=forget, args=(laptop, "x")),
            threading.Thread(target=forget, args=(desk, "y")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["x"]["forgotten"] and results["y"]["forgotten"]

        def settled(device: Device) -> bool:
            rotations = device.call("events", type="group_rekeyed")
            return any(not {ids["x"], ids["y"]} & set(e["data"]["secrets"]) for e in rotations)

        _wait("no rotation left both out", 60, lambda: settled(laptop) and settled(desk))
        converged(laptop, desk)
        before = _keys_of(laptop)
        for n in range(3):
            _send(laptop, "ann", f"after both {n}")
            _send(desk, "bob", f"after both {n}")
        after = set(converged(laptop, desk)) - before
        assert len(after) >= 6
        for gone in (x, y):
            assert not after & _keys_of(gone)
        for device in (laptop, desk):
            listed = {row["id"] for row in device.cli_json("devices")}
            assert listed == {ids["laptop"], ids["desk"]}


def _check_relay(
    relay: Relay,
    lost: Device,
    group: str,
    old_secret: bytes,
    ids: dict[str, str],
    seq_after: dict[str, int],
    tmp_path: Path,
) -> None:
    """The relay refuses lost (and an old invite), and its bytes do not open with old keys."""
    _wait(
        "lost was not refused",
        30,
        lambda: "removed from the group" in (lost.call("link.status")[0]["last_error"] or ""),
    )
    lost.stop()
    lost.start()  # a later attempt fails the same way
    _wait(
        "lost was let in again",
        30,
        lambda: "removed from the group" in (lost.call("link.status")[0]["last_error"] or ""),
    )
    assert lost.call("link.status")[0]["state"] != "connected"
    with sqlite3.connect(relay.data / "relay.db") as conn:
        rows = conn.execute(
            "SELECT origin, seq, nonce, box FROM envelopes WHERE group_id = ?", (group,)
        ).fetchall()
    old = Keyring.single(group, old_secret)
    raw = GroupKeys.derive(group, old_secret)
    later = [
        Envelope(origin=o, seq=s, nonce=n, box=b)
        for o, s, n, b in rows
        if (o == ids["laptop"] and s > seq_after["laptop"])
        or (o == ids["desk"] and s > seq_after["desk"])
    ]
    assert later
    for env in later:
        for attempt in (
            lambda e=env: old.open(e),
            lambda e=env: raw.open(e),
            lambda e=env: raw.open(e, e.box[:KID_SIZE]),
        ):
            with pytest.raises(TamperedEnvelope):
                attempt()


def test_forget_refuses_bad_input_and_an_old_invite(tmp_path: Path) -> None:
    """Unknown devices and this device itself are refused with one line; after a rotation the
    invite printed before it admits nobody at the relay, and a new invite works."""
    relay = Relay(tmp_path / "relay").start()
    try:
        with group_on(tmp_path, relay.url, "laptop", "lost") as (laptop, lost):
            _sinks(laptop, lost)
            laptop.wait_events(2, type="device_joined")
            old_invite = laptop.call("invite")["invite"]
            missing = laptop.cli("device", "forget", "nosuch", check=False)
            assert missing.returncode == 1 and "no device 'nosuch'" in missing.stderr
            itself = laptop.cli("device", "forget", laptop.short, check=False)
            assert itself.returncode == 1 and "this device itself" in itself.stderr
            laptop.cli("device", "forget", lost.short)
            again = laptop.cli_json("device", "forget", lost.short)
            assert again["already"] is True
            newcomer = Device(tmp_path / "newcomer", "newcomer").start()
            try:
                refused = newcomer.cli("join", old_invite, check=False)
                assert refused.returncode == 1 and "wrong group secret" in refused.stderr
            finally:
                newcomer.kill(signal.SIGTERM)
            fresh = Device(tmp_path / "fresh", "fresh").start()
            try:
                fresh.call("join", invite=laptop.call("invite")["invite"])
                _send(laptop, "ann", "welcome")
                converged(laptop, fresh)
                assert "welcome" in {
                    e["data"].get("text") for e in fresh.call("events", type="message_posted")
                }
            finally:
                fresh.kill(signal.SIGTERM)
    finally:
        relay.kill(signal.SIGTERM)
