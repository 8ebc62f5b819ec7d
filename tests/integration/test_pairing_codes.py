"""Pairing codes on real processes: a relay, daemons, a broker; codes, phrases, QR and links.

Every form joins a second device through the relay's rendezvous, for a group on the relay and
for a group on an MQTT broker (the code then meets on a relay given with --relay). Expired,
used and wrong codes fail with clear errors; a wrong code fails closed (what crossed the wire
to the joiner is checked frame by frame: the SPAKE2 message and a goodbye, nothing sealed);
repeated wrong codes hit the relay's limit while the group keeps working.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Device, Proxy, Relay, timeout

from switchboard import invites
from switchboard.crypto import fingerprint, load_identity, public_bytes
from switchboard.errors import InvalidInvite
from switchboard.proto.pairing import PairBye, PairClaimed, PairEnd, PairMsg, decode_pair

sys.path.insert(0, str(Path(__file__).parent.parent / "brokers"))
from brokerlab import Mosquitto


class SplitProxy(Proxy):
    """A proxy that also keeps what the relay sent back, apart from what it was sent."""

    def __init__(self, target_port: int) -> None:
        self.downstream = bytearray()
        super().__init__(target_port)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        if src.getpeername()[1] != self.target_port:
            return super()._pipe(src, dst)
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.downstream += data
                    self.captured += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def server_frames(raw: bytes) -> list[object]:
    """The rendezvous frames in a server-to-client byte stream (HTTP 101, then WebSocket)."""
    frames: list[object] = []
    rest = raw[raw.index(b"\r\n\r\n") + 4 :]
    while len(rest) >= 2:
        opcode, size, at = rest[0] & 0x0F, rest[1] & 0x7F, 2  # server frames are unmasked
        if size == 126:
            size, at = int.from_bytes(rest[2:4], "big"), 4
        payload, rest = rest[at : at + size], rest[at + size :]
        if opcode == 2:  # binary: ours (close frames and the like are not)
            frames.append(decode_pair(payload))
    return frames


def fingerprint_of(device: Device) -> str:
    key = load_identity(device.settings.identity_path)
    assert key is not None
    return fingerprint(public_bytes(key))


@contextlib.contextmanager
def pair(tmp: Path, relay_url: str | None = None) -> Iterator[tuple[Relay, Device, Device]]:
    """A relay, a laptop in a group on it (or on ``relay_url``'s broker) and a desk outside."""
    relay = Relay(tmp / "relay").start()
    laptop, desk = Device(tmp / "laptop", "laptop"), Device(tmp / "desk", "desk")
    try:
        for device in (laptop, desk):
            device.start()
            device.call("init", name=device.name)
        laptop.call("group.create", name="team", relay=relay_url or relay.url)
        yield relay, laptop, desk
    finally:
        for device in (laptop, desk):
            device.kill(signal.SIGTERM)
        relay.kill(signal.SIGTERM)


def secret_of(device: Device) -> bytes:
    return invites.parse(device.call("invite")["invite"]).secret


def assert_joined(laptop: Device, desk: Device) -> None:
    """The desk is in the laptop's group, and a message crosses."""
    assert desk.call("status")["groups"][0]["name"] == "team"
    desk.call("register", agent="nova")
    laptop.wait_events(1, type="agent_registered", agent="nova")
    laptop.call("send", agent="luna", to=["@nova"], text="hello through a code")
    texts = [m["text"] for m in desk.call("inbox", agent="nova", wait=timeout(30))]
    assert texts == ["hello through a code"]


def invite_line(device: Device, *args: str) -> str:
    return device.cli("invite", *args).stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("form", ["code", "words", "qr", "link"])
def test_each_form_joins_through_the_relay(tmp_path: Path, form: str) -> None:
    """Code, phrase, QR payload and link each join the desk; the CLI prints it last."""
    with pair(tmp_path) as (relay, laptop, desk):
        result = laptop.cli("invite", f"--{form}")
        last = result.stdout.strip().splitlines()[-1]
        if form == "qr":
            assert "\u2580" in result.stdout or "\u2584" in result.stdout  # drawn blocks
            assert last.startswith("switchboard://join?code=")
        code = invites.parse_pairing(last)
        assert code is not None
        joined = desk.cli(
            "join", last, *([] if form in ("qr", "link") else ["--relay", relay.url]), "--json"
        )
        inviter = json.loads(joined.stdout)["inviter"]
        assert inviter["name"] == "laptop"
        assert inviter["fingerprint"] == fingerprint_of(laptop)
        assert_joined(laptop, desk)
        listed = laptop.cli_json("invite", "list")
        assert listed[0]["state"] == "used" and listed[0]["joined"][0]["name"] == "desk"


@pytest.mark.slow  # each form through a broker too (the relay test covers every form)
@pytest.mark.parametrize("form", ["code", "words", "qr", "link"])
def test_each_form_joins_a_broker_group(tmp_path: Path, form: str) -> None:
    """A group on an MQTT broker: the code meets on a relay (--relay), events go by MQTT."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        with pair(tmp_path, broker.url) as (relay, laptop, desk):
            with pytest.raises(AssertionError, match="link is a broker"):
                laptop.cli("invite", "--code")
            last = invite_line(laptop, f"--{form}", "--relay", relay.url)
            desk.cli("join", last, *([] if form in ("qr", "link") else ["--relay", relay.url]))
            assert desk.call("status")["groups"][0]["link"]["url"].startswith("mqtt://")
            assert_joined(laptop, desk)
    finally:
        broker.stop()


def test_expired_used_and_revoked_codes_fail_clearly(tmp_path: Path) -> None:
    with pair(tmp_path) as (relay, laptop, desk):
        other = Device(tmp_path / "third", "third").start()
        try:
            expired = laptop.call("invite.create", kind="code", ttl=1)
            ended = laptop.call("invite.pending", id=expired["id"], wait=timeout(10))
            assert ended == {"id": expired["id"], "ended": True}
            with pytest.raises(InvalidInvite, match="no such pairing code"):
                desk.call("join", invite=expired["invite"], relay=relay.url)
            assert laptop.call("invite.list")[0]["state"] == "expired"

            used = laptop.call("invite.create", kind="code")
            desk.call("join", invite=used["invite"], relay=relay.url)
            with pytest.raises(InvalidInvite, match="no such pairing code"):
                other.call("join", invite=used["invite"], relay=relay.url)

            revoked = laptop.call("invite.create", kind="words")
            assert laptop.cli("invite", "revoke", revoked["id"]).returncode == 0
            with pytest.raises(InvalidInvite, match="no such pairing code"):
                other.call("join", invite=revoked["invite"], relay=relay.url)
            assert other.call("status")["groups"] == []
        finally:
            other.kill(signal.SIGTERM)


def test_a_wrong_code_fails_closed(tmp_path: Path) -> None:
    """Nothing sealed reaches a wrong guesser: its claim, the SPAKE2 answer, a goodbye."""
    with pair(tmp_path) as (relay, laptop, desk):
        proxy = SplitProxy(relay.port)
        try:
            made = laptop.call("invite.create", kind="code")
            right = invites.parse_pairing(made["invite"])
            assert right is not None
            wrong = f"{right.nameplate}-{'ember' if right.words[0] != 'ember' else 'fox'}-fox"
            with pytest.raises(InvalidInvite, match="wrong pairing code"):
                desk.call("join", invite=wrong, relay=proxy.url)
            assert desk.call("status")["groups"] == []
            frames = server_frames(bytes(proxy.downstream))
            assert [type(f) for f in frames] == [PairClaimed, PairMsg, PairBye]
            assert len(frames[1].body) == 33  # a SPAKE2 element, nothing sealed
            assert frames[2].code == PairEnd.WRONG_CODE
            assert secret_of(laptop) not in bytes(proxy.captured)
            # The invite survives one wrong guess: the right code still joins.
            desk.call("join", invite=made["invite"], relay=proxy.url)
            assert secret_of(laptop) not in bytes(proxy.captured)
            assert_joined(laptop, desk)
        finally:
            proxy.close()


def test_repeated_wrong_codes_burn_the_invite_and_hit_the_rate_limit(tmp_path: Path) -> None:
    with pair(tmp_path) as (relay, laptop, desk):
        made = laptop.call("invite.create", kind="code")
        code = invites.parse_pairing(made["invite"])
        assert code is not None
        guesses = [w for w in ("fox", "tiger", "lemon", "piano") if w not in code.words]
        errors = []
        for i in range(12):
            guess = f"{code.nameplate}-{guesses[i % 3]}-{guesses[(i + 1) % 3]}"
            with pytest.raises(InvalidInvite) as caught:
                desk.call("join", invite=guess, relay=relay.url)
            errors.append(str(caught.value))
        assert all("wrong pairing code" in e for e in errors[:3])
        assert laptop.call("invite.list")[0]["state"].startswith("burned")
        assert any("no such pairing code" in e for e in errors[3:10])
        assert "too many wrong pairing codes" in errors[-1]
        # The inviter is not locked out: a new code opens at once (its claim is refused for
        # this address until the window passes, which the relay's limiter tests cover).
        assert laptop.call("invite.create", kind="code")["state"] == "open"
        assert desk.call("status")["groups"] == []


def test_confirm_shows_the_joiner_and_can_refuse(tmp_path: Path) -> None:
    with pair(tmp_path) as (relay, laptop, desk):
        made = laptop.call("invite.create", kind="code", confirm=True, uses=2)
        outcome: dict[str, object] = {}

        def join() -> None:
            try:
                outcome["result"] = desk.call("join", invite=made["invite"], relay=relay.url)
            except InvalidInvite as exc:
                outcome["error"] = str(exc)

        worker = threading.Thread(target=join)
        worker.start()
        waiting = laptop.call("invite.pending", id=made["id"], wait=timeout(30))
        assert waiting["name"] == "desk"
        assert waiting["fingerprint"] == fingerprint_of(desk)
        laptop.call("invite.admit", id=made["id"], attempt=waiting["attempt"], admit=False)
        worker.join(timeout(60))
        assert "refused" in str(outcome["error"])
        assert desk.call("status")["groups"] == []

        # Through the CLI, answering yes at its prompt.
        asking = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "invite", "--code", "--confirm"],
            env=laptop.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert asking.stdout is not None and asking.stdin is not None
            line = asking.stdout.readline().strip()
            asking.stdin.write("y\n")
            asking.stdin.flush()
            result = desk.call("join", invite=line, relay=relay.url)
            assert result["inviter"]["name"] == "laptop"
            assert_joined(laptop, desk)
        finally:
            asking.kill()
            asking.wait(timeout(20))
        assert asking.stderr is not None
        assert "desk" in asking.stderr.read()
