"""``Registry``: devices online per group, replacement and presence, without any I/O."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_client import open_connection

from switchboard.crypto import GroupKeys, new_group_secret
from switchboard.errors import ByeCode
from switchboard.proto.frames import AnyFrame, Batch, Bye, Presences, decode_frame
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
    assert sent(a) == [Presences(online=[b.device], offline=[])]
    assert sent(b) == [] and sent(stranger) == []
    assert registry.others(a) == [b]
    assert registry.leave(b)
    assert sent(a) == [Presences(online=[], offline=[b.device])]
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
    assert frames[0] == Presences(online=[b.device, c.device], offline=[])
    assert isinstance(frames[1], Batch) and len(frames) == 2
    registry.send_presence()  # the timer firing later finds nothing left
    assert sent(a) == []


def test_registry_round_is_one_shared_frame_of_last_words_never_about_oneself() -> None:
    """A round is one Presences frame per connection, the same bytes for every connection
    that did not change, with each device's last word; a device never hears of itself."""
    registry = Registry()
    registry.on_pending = lambda: None
    a, b, c, d = (open_connection(KEYS, "g") for _ in range(4))
    for conn in (a, b):
        registry.join(conn)
    registry.send_presence()
    sent(a), sent(b)
    registry.join(c)
    registry.join(d)
    registry.leave(d)  # came and went within the round: offline is its last word
    assert registry.send_presence() == 3  # a, b and c were written to
    assert a.outbox[0] is b.outbox[0]  # encoded once, shared
    assert sent(a) == sent(b) == [Presences(online=[c.device], offline=[d.device])]
    assert sent(c) == [Presences(online=[], offline=[d.device])]


def test_registry_pending_presence_goes_to_one_connection_ahead_of_the_round() -> None:
    """send_pending_to tells one connection its group's queued changes and leaves the round
    queued for the others (a catch-up round or a directed frame must not wait for it)."""
    registry = Registry()
    registry.on_pending = lambda: None
    a, b, c = (open_connection(KEYS, "g") for _ in range(3))
    for conn in (a, b, c):
        registry.join(conn)
    registry.send_pending_to(c)
    assert sent(c) == [Presences(online=[a.device, b.device], offline=[])]
    assert sent(a) == [] and sent(b) == []
    registry.send_presence()
    assert sent(a) == [Presences(online=[b.device, c.device], offline=[])]
