"""Security on real processes: ciphertext only at the relay, authenticated members, bad input."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import stat
import time
from pathlib import Path

import msgspec
import pytest
from cluster import Device, Proxy, Relay, group_of, timeout
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard import crypto, invites, signatures
from switchboard.errors import AuthError
from switchboard.events import Event, decode_event, encode_event, now_ts
from switchboard.proto.frames import Envelope

MARKER = "PLAINTEXT-MARKER-7f3a"
FORGED = "FORGED-BY-MALLORY"
AGENT = "zanzibar"


def _all_bytes(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file())


def test_security_relay_and_wire_see_no_plaintext(tmp_path: Path) -> None:
    """Neither the relay's files nor the bytes on the wire contain message text or agent names."""
    relay = Relay(tmp_path / "relay").start()
    proxy = Proxy(relay.port)
    a, b = Device(tmp_path / "a", "a").start(), Device(tmp_path / "b", "b").start()
    try:
        b.call("join", invite=a.call("group.create", name="s", relay=proxy.url)["invite"])
        b.call("register", agent=AGENT)
        a.wait_events(1, type="agent_registered", agent=AGENT)
        a.call("send", agent="luna", to=[f"@{AGENT}"], text=MARKER)
        assert [m["text"] for m in b.call("inbox", agent=AGENT, wait=timeout(30))] == [MARKER]
        a.call("link.sync", timeout=20)
        b.call("link.sync", timeout=20)
    finally:
        a.stop()
        b.stop()
        proxy.close()
        relay.kill()
    stored = _all_bytes(tmp_path / "relay")
    wire = bytes(proxy.captured)
    assert len(wire) > 1000
    for secret in (MARKER.encode(), AGENT.encode(), b"message_posted"):
        assert secret not in stored
        assert secret not in wire
    # The devices themselves do hold the plaintext (the test would be vacuous otherwise).
    assert MARKER.encode() in _all_bytes(tmp_path / "b")


def test_security_wrong_group_secret_fails_clearly(tmp_path: Path) -> None:
    """An invite with the right group but a wrong secret is refused with a clear error."""
    with group_of(tmp_path, "laptop") as (relay, (a,)):
        good = invites.parse(a.call("invite")["invite"])
        forged = invites.render(
            invites.Invite(good.group, good.name, b"\x00" * 32, good.relay, good.relay_key)
        )
        intruder = Device(tmp_path / "intruder", "intruder").start()
        try:
            with pytest.raises(AuthError, match="wrong group secret"):
                intruder.call("join", invite=forged)
            assert intruder.call("status")["groups"] == []
            result = intruder.cli("join", forged, check=False)
            assert result.returncode == 1
            assert "wrong group secret" in result.stderr
            assert good.secret.hex() not in result.stderr + result.stdout
        finally:
            intruder.stop()
        assert relay.proc is not None and relay.proc.poll() is None


def test_security_tampered_envelope_is_reported_not_applied(tmp_path: Path) -> None:
    """An envelope altered at rest on the relay is rejected and reported, never applied."""
    relay = Relay(tmp_path / "relay")
    with group_of(tmp_path, "laptop", relay=relay) as (_, (a,)):
        for n in range(3):
            a.call("send", agent="luna", to=["@luna"], text=f"t{n}")
        a.call("link.sync", timeout=20)
        invite = a.call("invite")["invite"]
        origin = a.call("status")["device"]["id"]
        relay.kill()
        with sqlite3.connect(next((tmp_path / "relay").rglob("*.db"))) as db:
            seq, box = db.execute(
                "SELECT seq, box FROM envelopes WHERE origin = ? ORDER BY seq DESC LIMIT 1",
                (origin,),
            ).fetchone()
            db.execute(
                "UPDATE envelopes SET box = ? WHERE origin = ? AND seq = ?",
                (bytes([box[0] ^ 0xFF]) + box[1:], origin, seq),
            )
        relay.start()
        a.stop()  # only the relay can serve the newcomer now
        c = Device(tmp_path / "newcomer", "newcomer").start()
        try:
            c.call("join", invite=invite)
            c.wait_events(seq - 1, where=f"origin = '{origin}'")
            link = c.call("status")["groups"][0]["link"]
            assert link["tampered"] >= 1
            assert "failed authentication" in link["last_error"]
            held = [e["seq"] for e in c.call("events", where=f"origin = '{origin}'")]
            assert held == list(range(1, seq))
        finally:
            c.stop()


def test_security_daemon_socket_survives_garbage(tmp_path: Path) -> None:
    """Garbage, truncated and oversized requests get clear errors; the daemon keeps serving."""
    device = Device(tmp_path / "d", "d").start()
    try:
        path = str(device.settings.socket_path)
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert stat.S_IMODE(device.settings.identity_path.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            stream = sock.makefile("rwb")
            for bad in (
                b"garbage\n",
                b'{"id": 1, "method": "send"\n',
                b'{"id": 2, "method": "nope"}\n',
                b'{"id": 3, "method": "send", "params": {"agent": "x", "to": ["@@"]}}\n',
            ):
                stream.write(bad)
                stream.flush()
                answer = json.loads(stream.readline())
                assert answer["error"]["message"]
            stream.write(b'{"id": 4, "method": "ping", "params": {}}\n')
            stream.flush()
            assert json.loads(stream.readline())["result"]["running"] is True
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            # The daemon hangs up as soon as the line passes its limit, mid-send.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"x" * (3 * 1024 * 1024) + b"\n")
            answer = sock.makefile("rb").readline()
            assert b"request line exceeds limit of 1048576 bytes" in answer
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(b'{"id": 1, "method": "ping"')  # truncated, then hang up
        assert device.call("ping")["running"] is True
    finally:
        device.stop()


def test_security_events_where_cannot_write_or_attach(tmp_path: Path) -> None:
    """`events --where` refuses writes, ATTACH and secrets, with a clear one-line error."""
    device = Device(tmp_path / "d", "d").start()
    try:
        device.call("register", agent="luna")
        for where in (
            "1=1); DELETE FROM events; --",
            "id IN (SELECT 1 FROM groups)",
            "1=1) UNION SELECT secret FROM groups --",
            "(SELECT count(*) FROM pragma_table_info('events')) > 0",
        ):
            result = device.cli("events", "--where", where, check=False)
            assert result.returncode == 1, where
            assert result.stderr.startswith("switchboard: "), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
        attach = device.cli(
            "events",
            "--where",
            "1=1 AND (SELECT 1) ; ATTACH DATABASE '/tmp/x.db' AS x",
            check=False,
        )
        assert attach.returncode == 1
        assert device.call("events", type="agent_registered")
    finally:
        device.stop()


def test_security_forged_origin_is_rejected_and_reported(tmp_path: Path) -> None:
    """Envelopes a member sealed under another device's origin are rejected and reported.

    Mallory holds the group secret (she is a member), so her envelopes open; she seals (1) an
    event claiming the laptop's origin, signed with her own key, and (2) the laptop's genuine
    signed event re-numbered to another seq. A relay that re-serves them (written into its
    mailbox here, as a relay or a member could) reaches a newcomer, which applies neither.
    """
    relay = Relay(tmp_path / "relay")
    with group_of(tmp_path, "laptop", relay=relay) as (_, (a,)):
        for n in range(3):
            a.call("send", agent="luna", to=["@luna"], text=f"t{n}")
        a.call("link.sync", timeout=20)
        invite = a.call("invite")["invite"]
        parsed = invites.parse(invite)
        keys = crypto.GroupKeys.derive(parsed.group, parsed.secret)
        origin = a.call("status")["device"]["id"]
        relay.kill()
        with sqlite3.connect(next((tmp_path / "relay").rglob("*.db"))) as db:
            (top,) = db.execute(
                "SELECT max(seq) FROM envelopes WHERE origin = ?", (origin,)
            ).fetchone()
            (genuine,) = db.execute(
                "SELECT nonce, box FROM envelopes WHERE origin = ? AND seq = ?", (origin, top)
            ).fetchall()
            signed = signatures.decode_signed(
                keys.open(Envelope(origin=origin, seq=top, nonce=genuine[0], box=genuine[1]))
            )
            forged = Event(
                origin=origin, seq=top + 1, ts=now_ts(), type="message_posted", agent="luna",
                data={"to": ["@luna"], "recipients": [], "text": FORGED},
            )  # fmt: skip
            mallory = signatures.Signer(parsed.group, Ed25519PrivateKey.generate())
            [proof] = mallory.sign(origin, [(top + 1, encode_event(forged))])
            moved = msgspec.structs.replace(decode_event(signed.event), seq=top + 2)
            for env in (
                keys.seal(origin, top + 1, signatures.encode_signed(encode_event(forged), proof)),
                keys.seal(
                    origin, top + 2, signatures.encode_signed(encode_event(moved), signed.proof)
                ),
            ):
                db.execute(
                    "INSERT INTO envelopes (group_id, origin, seq, nonce, box, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (parsed.group, origin, env.seq, env.nonce, env.box, time.time()),
                )
            db.execute("UPDATE vectors SET seq = ? WHERE origin = ?", (top + 2, origin))
        relay.start()
        a.stop()  # only the relay can serve the newcomer now
        c = Device(tmp_path / "newcomer", "newcomer").start()
        try:
            c.call("join", invite=invite)
            c.wait_events(top, where=f"origin = '{origin}'")
            link = c.call("status")["groups"][0]["link"]
            assert link["forged"] >= 2  # both: the foreign key and the moved event
            assert "forged" in link["last_error"]
            held = c.call("events", where=f"origin = '{origin}'")
            assert [e["seq"] for e in held] == list(range(1, top + 1))
            assert FORGED not in json.dumps(held)
            assert "forged" in c.log_text
        finally:
            c.stop()


def test_security_members_serve_on_what_others_signed(tmp_path: Path) -> None:
    """A relay that lost its envelopes is refilled by a member, with the origin's proofs:
    a newcomer verifies and applies the events of a device that is offline all along."""
    relay = Relay(tmp_path / "relay")
    with group_of(tmp_path, "laptop", "desk", relay=relay) as (_, (a, b)):
        for n in range(5):
            a.call("send", agent="luna", to=["@luna"], text=f"t{n}")
        origin = a.call("status")["device"]["id"]
        top = max(e["seq"] for e in a.call("events", where=f"origin = '{origin}'"))
        b.wait_events(top, where=f"origin = '{origin}'")
        invite = a.call("invite")["invite"]
        a.stop()
        b.stop()
        relay.kill()
        with sqlite3.connect(next((tmp_path / "relay").rglob("*.db"))) as db:
            db.execute("DELETE FROM envelopes")
            db.execute("DELETE FROM vectors")
        relay.start()
        b.start()  # only the desk holds the laptop's events now, and serves them on
        c = Device(tmp_path / "newcomer", "newcomer").start()
        try:
            c.call("join", invite=invite)
            c.wait_events(top, where=f"origin = '{origin}'")
            link = c.call("status")["groups"][0]["link"]
            assert link["tampered"] == 0 and link["forged"] == 0
        finally:
            c.stop()
