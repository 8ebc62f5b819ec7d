"""``keyring``: rotated group keys, tagged envelopes, secrets sealed to device keys, and the
deterministic choice of the current key when rotations race."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from switchboard import invites
from switchboard.crypto import public_bytes
from switchboard.errors import InvalidInvite, TamperedEnvelope
from switchboard.events import Event
from switchboard.ids import device_id_from_public_key
from switchboard.keyring import (
    KeyMissing,
    Keyring,
    Rotation,
    key_id,
    learn_rotation,
    load,
    open_secret,
    rotation_of,
    seal_secret,
)
from switchboard.links.supervisor import seal_events
from switchboard.relay.mailbox import Mailbox
from switchboard.signatures import Signer

GROUP = "g" * 26
ROOT = bytes(range(32))
NEXT = bytes(range(1, 33))
OTHER = bytes(range(2, 34))


def _device() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, device_id_from_public_key(public_bytes(key))


def _rekeyed(origin: str, seq: int, secret: bytes, previous: bytes, to: dict[str, bytes],
             forgotten: dict[str, int]) -> Event:  # fmt: skip
    data = {
        "group": GROUP,
        "key": key_id(secret).hex(),
        "previous": previous.hex(),
        "secrets": {d: seal_secret(k, secret).hex() for d, k in to.items()},
        "forgotten": forgotten,
    }
    return Event(origin=origin, seq=seq, ts="2026-01-01T00:00:00.000Z", type="group_rekeyed",
                 agent="", data=data)  # fmt: skip


def _posted(origin: str, seq: int) -> Event:
    return Event(origin=origin, seq=seq, ts="2026-01-01T00:00:00.000Z", type="message_posted",
                 agent="ann", data={"text": f"at {seq}"})  # fmt: skip


def test_keyring_root_envelopes_are_untagged_later_ones_tagged_and_bound() -> None:
    """The root key seals as before rotations existed; a later key tags its envelopes, and a
    keyring without that key calls them missing, not tampered; a changed tag fails."""
    ring = Keyring.single(GROUP, ROOT)
    old = Keyring.single(GROUP, ROOT)
    root_env = ring.seal("a", 1, b"hello")
    assert old.open(root_env) == b"hello" and not root_env.nonce[8] & 0x80
    ring.add(NEXT)
    ring.learn(Rotation(key_id(NEXT), key_id(ROOT), "a", frozenset({"a"})))
    assert ring.current == key_id(NEXT)
    env = ring.seal("a", 2, b"secret")
    assert env.box[:4] == key_id(NEXT) and env.nonce[8] & 0x80
    assert ring.open_keyed(env) == (b"secret", key_id(NEXT))
    assert ring.open(root_env) == b"hello"  # old events stay readable
    with pytest.raises(KeyMissing):
        old.open(env)
    forged = type(env)(origin=env.origin, seq=env.seq, nonce=env.nonce,
                       box=key_id(ROOT) + env.box[4:])  # fmt: skip
    with pytest.raises(TamperedEnvelope):
        ring.open(forged)
    assert ring.seal("a", 3, b"x", key_id(ROOT)).box[:4] != key_id(NEXT)  # sealed under root


def test_keyring_secret_sealed_to_a_device_opens_only_for_it() -> None:
    key, _ = _device()
    other, _ = _device()
    box = seal_secret(public_bytes(key), NEXT)
    assert open_secret(key, box) == NEXT
    assert open_secret(other, box) is None
    assert open_secret(key, box[:-1]) is None


def test_keyring_learns_a_rotation_kept_devices_switch_the_forgotten_does_not() -> None:
    """A device the rotation kept takes the new secret and seals with it; the forgotten one
    knows it was left out, and its later events are refused by the others."""
    (ka, a), (kb, b), (kx, x) = _device(), _device(), _device()
    event = _rekeyed(a, 5, NEXT, key_id(ROOT), {a: public_bytes(ka), b: public_bytes(kb)},
                     {x: 7})  # fmt: skip
    kept, gone = Keyring.single(GROUP, ROOT), Keyring.single(GROUP, ROOT)
    assert learn_rotation(kept, kb, event) == NEXT
    assert learn_rotation(gone, kx, event) is None
    assert kept.current == key_id(NEXT) and gone.current == key_id(ROOT)
    assert gone.is_forgotten(x) and not kept.is_forgotten(b)
    assert kept.admits(x, 7, key_id(ROOT)) is None  # before its cut-off
    assert kept.admits(x, 8, key_id(ROOT)) is not None
    newcomer = _device()[1]  # not kept by the rotation: may not write under the old key
    assert kept.admits(newcomer, 1, key_id(ROOT)) is not None
    assert kept.admits(newcomer, 1, key_id(NEXT)) is None
    assert kept.admits(b, 9, key_id(ROOT)) is None  # kept, offline meanwhile


def test_keyring_seals_an_authors_events_before_its_rotation_under_the_key_it_replaced() -> None:
    """The rotation's author's events up to the rotation travel under the key it replaced
    (its link may send one written just before only after the switch), whoever seals them
    and after a reload; later ones and other devices' under the current key. A forgotten
    device so opens everything of the author's up to the rotation, the rotation included,
    and nothing after it."""
    (ka, a), (kx, x) = _device(), _device()
    event = _rekeyed(a, 5, NEXT, key_id(ROOT), {a: public_bytes(ka)}, {x: 3})
    author = Keyring.single(GROUP, ROOT)
    assert learn_rotation(author, ka, event) == NEXT
    rows = [
        (key_id(ROOT), ROOT, None, "", [], {}, 0),
        (key_id(NEXT), NEXT, key_id(ROOT), a, [a], {x: 3}, 5),
    ]
    gone = Keyring.single(GROUP, ROOT)
    learn_rotation(gone, kx, event)
    signer = Signer(GROUP, ka)
    assert signer.origin == a
    for ring in (author, load(GROUP, NEXT, rows, key_id(ROOT))):
        assert [ring.sealing_key(a, seq) for seq in (1, 4, 5)] == [key_id(ROOT)] * 3
        assert ring.sealing_key(a, 6) is None and ring.sealing_key("b", 1) is None
        before, rotation, after = seal_events(
            ring, signer, [_posted(a, 4), event, _posted(a, 6)], {}
        )
        assert gone.open(before) and gone.open(rotation)
        with pytest.raises(KeyMissing):
            gone.open(after)
    later = bytes(range(5, 37))  # a second rotation by the same author, at seq 9
    author.add(later)
    author.learn(Rotation(key_id(later), key_id(NEXT), a, frozenset({a}), (), 9))
    assert [author.sealing_key(a, s) for s in (5, 6, 9, 10)] == [
        key_id(ROOT),
        key_id(NEXT),
        key_id(NEXT),
        None,
    ]


def test_keyring_refuses_a_rotation_that_forgets_its_own_author() -> None:
    ka, a = _device()
    event = _rekeyed(a, 1, NEXT, key_id(ROOT), {a: public_bytes(ka)}, {a: 0})
    assert rotation_of(event) is None


@given(st.permutations(range(3)))
def test_keyring_racing_rotations_pick_the_same_key_in_any_order(order: list[int]) -> None:
    """Two rotations of one key, and a follow-up from the winner: every device ends on the
    same current key whatever order it learns them in; until the follow-up, the loser's
    author is told to forget its device again."""
    winner, loser = sorted([key_id(NEXT), key_id(OTHER)])
    secret_of = {key_id(NEXT): NEXT, key_id(OTHER): OTHER}
    third = bytes(range(3, 35))
    rotations = [
        Rotation(winner, key_id(ROOT), "a", frozenset({"a", "b", "y"}), (("x", 1),)),
        Rotation(loser, key_id(ROOT), "b", frozenset({"a", "b", "x"}), (("y", 1),)),
        Rotation(key_id(third), winner, "b", frozenset({"a", "b"}), (("y", 1),)),
    ]
    racing = Keyring.single(GROUP, ROOT)
    for kid in (winner, loser):
        racing.add(secret_of[kid])
    for index in [i for i in order if i < 2]:
        racing.learn(rotations[index])
    assert racing.current == winner
    assert racing.needs_rotation("b") == ["y"] and racing.needs_rotation("a") == []
    ring = Keyring.single(GROUP, ROOT)
    for secret in (NEXT, OTHER, third):
        ring.add(secret)
    for index in order:
        ring.learn(rotations[index])
    assert ring.current == key_id(third)
    assert ring.needs_rotation("b") == [] and ring.forgotten == {"x": 1, "y": 1}


def test_keyring_reloads_from_rows_and_invites_carry_the_history() -> None:
    """The store's rows rebuild the same keyring; an invite carries every secret, the root's
    first, so a joiner reads what was sealed before it joined."""
    ring = Keyring.single(GROUP, ROOT)
    ring.add(NEXT)
    ring.learn(Rotation(key_id(NEXT), key_id(ROOT), "a", frozenset({"a"}), (("x", 2),)))
    rows = [
        (key_id(ROOT), ROOT, None, "", [], {}, 0),
        (key_id(NEXT), NEXT, key_id(ROOT), "a", ["a"], {"x": 2}, 0),
    ]
    again = load(GROUP, ROOT, rows, key_id(ROOT))
    assert (again.current, again.forgotten) == (ring.current, ring.forgotten)
    env = ring.seal("a", 1, b"data")
    assert again.open(env) == b"data"
    *older, current = ring.known_secrets()
    assert (older, current) == ([ROOT], NEXT)
    token = invites.render(invites.Invite(GROUP, "t", current, "ws://h:1", None, None, (ROOT,)))
    parsed = invites.parse(token)
    assert (parsed.secret, parsed.history) == (NEXT, (ROOT,))
    history = [(key_id(s), s, None, "", [], {}, 0) for s in parsed.history]
    joiner = load(GROUP, parsed.secret, history, key_id(parsed.history[0]))
    assert joiner.current == key_id(NEXT) and joiner.open(env) == b"data"
    assert joiner.open(Keyring.single(GROUP, ROOT).seal("a", 2, b"old")) == b"old"
    bad = invites.render(invites.Invite(GROUP, "t", NEXT, "ws://h:1", None, None, (b"short",)))
    with pytest.raises(InvalidInvite):
        invites.parse(bad)


def test_mailbox_rekey_admits_kept_devices_with_the_old_key_and_refuses_the_forgotten(
    tmp_path: Path,
) -> None:
    """After a rekey the relay's store admits the new key from anyone not forgotten, the old
    key only from the devices kept, and the forgotten device with no key at all; it survives
    a reopen, and a second rekey of the replaced key is refused."""
    old, new, later = (bytes([n]) * 32 for n in (1, 2, 3))
    box = Mailbox(tmp_path / "relay.db")
    box.register_group(GROUP, old, 0.0)
    assert box.rekey_group(GROUP, old, new, ["a", "b"], ["x"])
    assert not box.rekey_group(GROUP, old, later, ["a"], ["b"])  # old is not current now
    box.close()
    box = Mailbox(tmp_path / "relay.db")
    assert box.admits(GROUP, new, "c") is None
    assert box.admits(GROUP, old, "a") is None
    assert box.admits(GROUP, old, "c") is not None
    for key in (old, new):
        assert "removed" in (box.admits(GROUP, key, "x") or "")
    assert box.rekey_group(GROUP, new, later, ["a"], ["b"])
    assert box.admits(GROUP, old, "b") is not None and box.admits(GROUP, old, "a") is None
    box.close()
