"""Per-device signatures: batches sign and verify, and every kind of forgery is caught."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pairing import GROUP, KEYS

from switchboard.errors import ForgedEvent, TamperedEnvelope
from switchboard.events import Event, encode_event
from switchboard.links.relay import RelayLink
from switchboard.links.supervisor import open_envelope, seal_events
from switchboard.signatures import (
    LEAVES_PER_ROOT,
    EventProof,
    Signer,
    Verifier,
    decode_proof,
    encode_proof,
    encode_signed,
    merkle_paths,
)
from switchboard.store.db import Database
from switchboard.store.log import EventLog

ALICE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
MALLORY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
SIGNER = Signer(GROUP, ALICE)
A = SIGNER.origin
M = Signer(GROUP, MALLORY).origin


def event(origin: str, seq: int, text: str = "hi") -> Event:
    return Event(
        origin=origin,
        seq=seq,
        ts="2026-01-01T00:00:00.000000Z",
        type="message_posted",
        agent="luna",
        data={"to": ["@nova"], "recipients": [], "text": text},
    )


def batch(count: int) -> list[tuple[int, bytes]]:
    return [(seq, encode_event(event(A, seq, f"t{seq}"))) for seq in range(1, count + 1)]


@given(st.integers(1, 70))
def test_signatures_every_event_of_a_batch_verifies_alone(count: int) -> None:
    """Each event of a batch of any size verifies on its own, in any order, after storage."""
    events = batch(count)
    proofs = SIGNER.sign(A, events)
    # one signature per LEAVES_PER_ROOT events of the batch
    assert len({p.sig for p in proofs}) == -(-count // LEAVES_PER_ROOT)
    assert max(p.count for p in proofs) <= LEAVES_PER_ROOT
    verifier = Verifier(GROUP)
    for (seq, data), proof in reversed(list(zip(events, proofs, strict=True))):
        verifier.verify(A, seq, data, decode_proof(encode_proof(proof)))


def test_signatures_merkle_tree_of_one_leaf_is_the_leaf() -> None:
    """A batch of one event signs the event's leaf itself (no path)."""
    root, paths = merkle_paths([b"x" * 32])
    assert root == b"x" * 32 and paths == [[]]


def _flip(data: bytes, at: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@settings(max_examples=300)
@given(
    st.integers(1, 40),
    st.data(),
    st.sampled_from(["event", "seq", "origin", "key", "sig", "index", "count", "path"]),
    st.booleans(),
)
def test_signatures_any_tampering_is_a_forgery(
    count: int, data: st.DataObject, part: str, warm: bool
) -> None:
    """Change one thing of a signed event (bytes, place, proof) and it no longer verifies,
    also by a verifier that already checked (and remembers the tree of) the genuine batch."""
    events = batch(count)
    proofs = SIGNER.sign(A, events)
    verifier = Verifier(GROUP)
    if warm:
        for (genuine_seq, genuine), genuine_proof in zip(events, proofs, strict=True):
            verifier.verify(A, genuine_seq, genuine, genuine_proof)
    i = data.draw(st.integers(0, count - 1))
    (seq, body), proof = events[i], proofs[i]
    with pytest.raises(ForgedEvent):
        verifier.verify(*_tampered(data, part, count, (A, seq, body, proof)))


Item = tuple[str, int, bytes, EventProof]


def _tampered(data: st.DataObject, part: str, count: int, item: Item) -> Item:
    """``item`` (an event of a batch of ``count``) with ``part`` of it changed."""
    origin, seq, body, proof = item
    at = data.draw(st.integers(0, 10_000))
    if part == "event":
        body = _flip(body, at)
    elif part == "seq":
        seq = data.draw(st.integers(1, 2**62).filter(lambda s: s != item[1]))
    elif part == "origin":
        origin = M
    elif part == "key":
        proof = EventProof(_flip(proof.key, at), proof.sig, proof.index, proof.count, proof.path)
    elif part == "sig":
        proof = EventProof(proof.key, _flip(proof.sig, at), proof.index, proof.count, proof.path)
    elif part == "index":
        other = data.draw(st.integers(-1, count + 1).filter(lambda n: n != proof.index))
        proof = EventProof(proof.key, proof.sig, other, proof.count, proof.path)
    elif part == "count":
        other = data.draw(st.integers(0, 2 * count + 2).filter(lambda n: n != proof.count))
        proof = EventProof(proof.key, proof.sig, proof.index, other, proof.path)
    else:
        path = list(proof.path)
        if not path:
            path = [bytes(32)]  # a batch of one has no path: adding one is the tampering
        else:
            j = at % len(path)
            path[j] = _flip(path[j], at)
        proof = EventProof(proof.key, proof.sig, proof.index, proof.count, path)
    return origin, seq, body, proof


def test_signatures_a_member_cannot_write_as_another_device() -> None:
    """Mallory holds the group key and seals an event claiming Alice's origin: rejected."""
    forged = encode_event(event(A, 1, "wire the money"))
    [own_proof] = Signer(GROUP, MALLORY).sign(A, [(1, forged)])  # Mallory's key, Alice's origin
    env = KEYS.seal(A, 1, encode_signed(forged, own_proof))
    with pytest.raises(ForgedEvent, match="another device's key"):
        open_envelope(KEYS, Verifier(GROUP), env)
    # Unsigned, as an older release sealed events: rejected as well.
    with pytest.raises(ForgedEvent, match="not signed"):
        open_envelope(KEYS, Verifier(GROUP), KEYS.seal(A, 1, forged))


def test_signatures_a_signed_event_moved_to_another_place_fails() -> None:
    """Re-sealing Alice's signed event 1 as her event 2 (a member's splice) fails."""
    [env] = seal_events(KEYS, SIGNER, [event(A, 1)], {})
    plaintext = KEYS.open(env)
    with pytest.raises(TamperedEnvelope):  # the event inside says seq 1
        open_envelope(KEYS, Verifier(GROUP), KEYS.seal(A, 2, plaintext))
    [proof] = SIGNER.sign(A, [(1, encode_event(event(A, 1)))])
    moved = encode_signed(encode_event(event(A, 2)), proof)  # seq rewritten, old proof kept
    with pytest.raises(ForgedEvent):
        open_envelope(KEYS, Verifier(GROUP), KEYS.seal(A, 2, moved))


def test_signatures_proofs_are_stored_and_served_on(tmp_path: Path) -> None:
    """A device stores other devices' proofs and re-serves their events verifiable."""
    sent = seal_events(KEYS, SIGNER, [event(A, seq) for seq in (1, 2, 3)], {})
    verifier = Verifier(GROUP)
    opened = [open_envelope(KEYS, verifier, env) for env in sent]
    db = Database(tmp_path / "b.db")
    try:
        log = EventLog(db, M)
        log.receive_sync([e for e, _ in opened], {e.key: encode_proof(p) for e, p in opened})
        held = log.since({}, 10)
        proofs = log.proofs(held)
        assert sorted(proofs) == [(A, 1), (A, 2), (A, 3)]
        again = seal_events(KEYS, Signer(GROUP, MALLORY), held, proofs)
        assert [open_envelope(KEYS, Verifier(GROUP), env)[0] for env in again] == held
        # An event of another device without a proof is not served, nor any later one of
        # its origin (it would lie past a hole); the origin is reported unserved.
        unserved: set[str] = set()
        holed = {key: proof for key, proof in proofs.items() if key != (A, 2)}
        again = seal_events(KEYS, Signer(GROUP, MALLORY), held, holed, unserved)
        assert [env.seq for env in again] == [1] and unserved == {A}
    finally:
        db.close()


@settings(max_examples=200)
@given(st.integers(2, 30), st.data())
def test_signatures_a_relay_cannot_splice_or_alter_a_batch(count: int, data: st.DataObject) -> None:
    """A relay rewrites a signed batch (headers, nonces, boxes swapped or altered): every
    envelope either opens to exactly what was sent at its place or is refused."""
    sent_events = [event(A, seq, f"t{seq}") for seq in range(1, count + 1)]
    sent = seal_events(KEYS, SIGNER, sent_events, {})
    by_place = {e.key: e for e in sent_events}
    envs = list(sent)
    for _ in range(data.draw(st.integers(1, 4))):
        i, j = data.draw(st.integers(0, count - 1)), data.draw(st.integers(0, count - 1))
        how = data.draw(st.sampled_from(["swap_box", "swap_nonce", "seq", "flip", "replay"]))
        a, b = envs[i], envs[j]
        if how == "swap_box":
            envs[i] = msgspec.structs.replace(a, box=b.box)
        elif how == "swap_nonce":
            envs[i] = msgspec.structs.replace(a, nonce=b.nonce)
        elif how == "seq":
            envs[i] = msgspec.structs.replace(a, seq=b.seq)
        elif how == "flip":
            envs[i] = msgspec.structs.replace(a, box=_flip(a.box, data.draw(st.integers(0, 999))))
        else:
            envs.append(b)
    verifier = Verifier(GROUP)
    for env in envs:
        try:
            opened, _ = open_envelope(KEYS, verifier, env)
        except TamperedEnvelope:
            continue
        assert opened == by_place[(env.origin, env.seq)]


@settings(max_examples=300)
@given(
    st.integers(1, 40),
    st.data(),
    st.sampled_from(["event", "seq", "origin", "key", "sig", "index", "count", "path"]),
)
def test_signatures_a_batch_verified_at_once_refuses_exactly_the_tampered_event(
    count: int, data: st.DataObject, part: str
) -> None:
    """``verify_many`` over a whole batch (trees checked at once) with one event tampered
    refuses that one and only that one, for the same reasons ``verify`` gives."""
    events = batch(count)
    proofs = SIGNER.sign(A, events)
    items = [(A, seq, body, proof) for (seq, body), proof in zip(events, proofs, strict=True)]
    assert Verifier(GROUP).verify_many(items) == [None] * count
    i = data.draw(st.integers(0, count - 1))
    items[i] = _tampered(data, part, count, items[i])
    refused = Verifier(GROUP).verify_many(items)
    assert isinstance(refused[i], ForgedEvent)
    assert refused[:i] + refused[i + 1 :] == [None] * (count - 1)


def test_signatures_a_whole_tree_signed_by_another_device_is_refused() -> None:
    """Mallory signs a complete tree of events claiming Alice's origin: all refused."""
    events = batch(LEAVES_PER_ROOT)
    proofs = Signer(GROUP, MALLORY).sign(A, events)
    items = [(A, seq, body, proof) for (seq, body), proof in zip(events, proofs, strict=True)]
    refused = Verifier(GROUP).verify_many(items)
    assert all(isinstance(r, ForgedEvent) and "another device" in str(r) for r in refused)
    # Twice the same tree in one batch (a replay): checked one by one, all genuine.
    genuine = SIGNER.sign(A, events)
    items = [(A, seq, body, proof) for (seq, body), proof in zip(events, genuine, strict=True)]
    assert Verifier(GROUP).verify_many(items + items) == [None] * (2 * len(items))


def test_signatures_a_link_opens_a_batch_and_drops_only_the_forged(tmp_path: Path) -> None:
    """``open_envelopes`` over a batch with one event forged by another member: that one is
    counted and dropped, the rest open, in order."""
    sent = [event(A, seq, f"t{seq}") for seq in range(1, 41)]
    envs = seal_events(KEYS, SIGNER, sent, {})
    forged = encode_event(event(A, 7, "wire the money"))
    [mallory_proof] = Signer(GROUP, MALLORY).sign(A, [(7, forged)])
    envs[6] = KEYS.seal(A, 7, encode_signed(forged, mallory_proof))
    db = Database(tmp_path / "b.db")
    try:
        link = RelayLink(
            log=EventLog(db, M), keys=KEYS, url="ws://x", device_id=M, identity=MALLORY
        )
        opened = link.open_envelopes(envs)
    finally:
        db.close()
    assert opened == sent[:6] + sent[7:]
    assert link.status.forged == 1 and link.status.tampered == 1
    assert sorted(link.take_proofs(opened)) == [e.key for e in opened]
