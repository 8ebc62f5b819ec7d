"""``Registry``: devices online per group, replacement and presence, without any I/O."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_client import open_connection

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.errors import ByeCode
from switchboard.proto.frames import AnyFrame, Batch, Bye, Presence, decode_frame
from switchboard.relay.connection import Connection, Phase
from switchboard.relay.registry import Registry

KEYS = GroupKeys.derive("g", new_group_secret())


def sent(conn: Connection) -> list[AnyFrame]:
    """Return and forget the frames a connection queued."""
    frames = [decode_frame(frame) for frame in conn.outbox]
    conn.outbox.clear()
    conn.outbox_bytes = 0
    return frames


def test_registry_announces_joins_and_leaves_to_the_group_only() -> None:
    """Devices of a group hear each other come and go; other groups hear nothing."""
    registry = Registry()
    a, b = open_connection(KEYS, "g"), open_connection(KEYS, "g")
    stranger = open_connection(KEYS, "h")
    for conn in (a, stranger, b):
        assert registry.join(conn) is None
    assert len(registry) == 3
    assert sent(a) == [Presence(device=b.device, online=True)]
    assert sent(b) == [] and sent(stranger) == []
    assert registry.others(a) == [b]
    assert registry.leave(b)
    assert sent(a) == [Presence(device=b.device, online=False)]
    assert sent(stranger) == []


def test_registry_newer_connection_replaces_older_quietly() -> None:
    """A device's second connection replaces its first, which gets Bye; no presence flickers."""
    registry = Registry()
    identity = Ed25519PrivateKey.generate()
    watcher, old = open_connection(KEYS, "g"), open_connection(KEYS, "g", identity)
    registry.join(watcher)
    registry.join(old)
    sent(watcher)
    new = open_connection(KEYS, "g", identity)
    assert new.device == old.device
    assert registry.join(new) is old
    assert [f.code for f in sent(old) if isinstance(f, Bye)] == [ByeCode.GOING_AWAY]
    assert not registry.leave(old)
    assert sent(watcher) == []
    assert registry.others(watcher) == [new]


def test_registry_forwards_to_the_rest_of_the_group() -> None:
    """Envelopes a device brought are offered to the others of its group, never back to it."""
    registry = Registry()
    a, b = open_connection(KEYS, "g"), open_connection(KEYS, "g")
    registry.join(a)
    registry.join(b)
    sent(a)
    b.move_to(Phase.LIVE)
    registry.forward(a, [KEYS.seal(a.device, 1, b"x")])
    assert [type(f) for f in sent(b)] == [Batch]
    assert sent(a) == []


def test_registry_coalesced_presence_goes_out_together_and_before_events() -> None:
    """With on_pending set, announcements wait, in order, and precede anything forwarded."""
    registry = Registry()
    calls: list[None] = []
    registry.on_pending = lambda: calls.append(None)
    a, b, c = (open_connection(KEYS, "g") for _ in range(3))
    for conn in (a, b, c):
        registry.join(conn)
    assert calls == [None]  # asked once to send them, when the first queued
    assert sent(a) == []  # nothing yet
    a.move_to(Phase.LIVE)
    registry.forward(c, [KEYS.seal(c.device, 1, b"x")])
    frames = sent(a)
    assert frames[:2] == [Presence(device=b.device, online=True),
                          Presence(device=c.device, online=True)]  # fmt: skip
    assert isinstance(frames[2], Batch) and len(frames) == 3
    registry.send_presence()  # the timer firing later finds nothing left
    assert sent(a) == []
