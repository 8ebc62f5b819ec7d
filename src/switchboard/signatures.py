"""Per-device signatures: each event verifiable alone, whoever serves it (``crypto`` seals).

Theory of operation
-------------------
The group key proves membership, not authorship: any member can seal an envelope under any
origin. So every device also signs what it writes, with its own Ed25519 identity, one
signature per ``LEAVES_PER_ROOT`` events of a sent batch: those events are the leaves of a
Merkle tree (``leaf_hash`` binds group, origin, seq and the encoded event), and the device
signs its root (``batch_message``). Each event then carries an ``EventProof``: the signer's
public key, the signature, its leaf's index, the leaf count and the sibling hashes up to the
root. The proof travels *inside* the sealed box (``SignedEvent``), so a relay sees no signature and
cannot test guesses of a plaintext against one; a member that re-serves another device's
event sends the proof it received with it, so any event verifies alone, however batches are
later split or merged. ``Verifier`` checks that the key derives to the origin's device id
(``ids.device_id_from_public_key``: 130 bits of SHA-256, so no member can grind a key for
another's id), walks the path and checks the signature once per distinct root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.crypto import header, key_owner, public_bytes, sign, verify_signature
from switchboard.errors import ForgedEvent
from switchboard.ids import device_id_from_public_key

# Verified roots a ``Verifier`` remembers; a batch's events share one, so this bounds memory,
# not work (a forgotten root costs one more verification).
VERIFIED_ROOTS: Final = 4096
# Leaves per signed Merkle root: a proof carries 32 bytes per level of its tree, which cost more
# on the wire than the extra signatures (bench/signatures.py: +244 B per event at 16 against
# +417 B at 500, for 25% less verification throughput per core, still 7x the link's).
LEAVES_PER_ROOT: Final = 16
_MAX_PATH: Final = 32  # sibling hashes: a tree of up to 2^32 leaves, far past any batch


class EventProof(msgspec.Struct, frozen=True, array_like=True):
    """What makes one event verifiable alone: its batch's signature and its Merkle path."""

    key: bytes  # the signing device's Ed25519 public key (32 bytes)
    sig: bytes  # its signature of ``batch_message`` (64 bytes)
    index: int  # the event's leaf among the batch's leaves of this origin
    count: int  # how many leaves the tree has
    path: list[bytes]  # sibling hashes from the leaf up to the root


class SignedEvent(msgspec.Struct, frozen=True, array_like=True):
    """The plaintext inside an envelope's box: an encoded event and its proof."""

    event: bytes
    proof: EventProof


_proof_encoder: Final = msgspec.msgpack.Encoder()
_signed_decoder: Final = msgspec.msgpack.Decoder(SignedEvent)
_proof_decoder: Final = msgspec.msgpack.Decoder(EventProof)


def encode_signed(event: bytes, proof: EventProof) -> bytes:
    """Encode the plaintext of a signed envelope."""
    return _proof_encoder.encode(SignedEvent(event=event, proof=proof))


def decode_signed(plaintext: bytes) -> SignedEvent:
    """Decode the plaintext of a signed envelope.

    Raises:
        msgspec.DecodeError: it is not one (an unsigned event of an older release included).
    """
    return _signed_decoder.decode(plaintext)


def encode_proof(proof: EventProof) -> bytes:
    """Encode a proof for storage beside its event."""
    return _proof_encoder.encode(proof)


def decode_proof(data: bytes) -> EventProof:
    """Decode a stored proof (``encode_proof``)."""
    return _proof_decoder.decode(data)


def leaf_hash(group: str, origin: str, seq: int, event: bytes) -> bytes:
    """The Merkle leaf of one encoded event at its place."""
    place = header(group, origin, seq)
    return hashlib.sha256(b"\x00" + len(place).to_bytes(2, "big") + place + event).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """Return the root over ``leaves`` and each leaf's path of sibling hashes.

    A level of odd width carries its last node up unhashed, so every leaf count has one tree.
    """
    assert leaves, "a tree needs a leaf"
    paths: list[list[bytes]] = [[] for _ in leaves]
    members: list[list[int]] = [[i] for i in range(len(leaves))]  # leaves under each node
    level = list(leaves)
    while len(level) > 1:
        nxt, grouped = [], []
        for i in range(0, len(level) - 1, 2):
            for leaf in members[i]:
                paths[leaf].append(level[i + 1])
            for leaf in members[i + 1]:
                paths[leaf].append(level[i])
            nxt.append(_node(level[i], level[i + 1]))
            grouped.append(members[i] + members[i + 1])
        if len(level) % 2:
            nxt.append(level[-1])
            grouped.append(members[-1])
        level, members = nxt, grouped
    return level[0], paths


def root_of(leaf: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes | None:
    """Walk ``path`` up from ``leaf``; ``None`` if the path does not fit ``index``/``count``."""
    if not 0 <= index < count or len(path) > _MAX_PATH:
        return None
    node, width, steps = leaf, count, iter(path)
    while width > 1:
        if index % 2 == 0 and index == width - 1:
            pass  # the odd node out: carried up unhashed
        else:
            sibling = next(steps, None)
            if sibling is None or len(sibling) != 32:
                return None
            node = _node(sibling, node) if index % 2 else _node(node, sibling)
        index, width = index // 2, (width + 1) // 2
    return node if next(steps, None) is None else None


def batch_message(group: str, count: int, root: bytes) -> bytes:
    """What a device signs for a batch: the group, the leaf count and the Merkle root."""
    return b"sb-batch-v1\x00%s\x00%d\x00%s" % (group.encode(), count, root)


@dataclass
class Signer:
    """Signs this device's own events, one signature per ``LEAVES_PER_ROOT`` of a batch."""

    group: str
    identity: Ed25519PrivateKey = field(repr=False)
    public: bytes = field(init=False)
    origin: str = field(init=False)  # this device's id, derived from its key

    def __post_init__(self) -> None:
        self.public = public_bytes(self.identity)
        self.origin = device_id_from_public_key(self.public)

    def sign(self, origin: str, events: Sequence[tuple[int, bytes]]) -> list[EventProof]:
        """Sign ``(seq, encoded event)`` pairs of ``origin`` (this device), one signature per
        ``LEAVES_PER_ROOT`` of them."""
        proofs: list[EventProof] = []
        for start in range(0, len(events), LEAVES_PER_ROOT):
            chunk = events[start : start + LEAVES_PER_ROOT]
            leaves = [leaf_hash(self.group, origin, seq, data) for seq, data in chunk]
            root, paths = merkle_paths(leaves)
            sig = sign(self.identity, batch_message(self.group, len(leaves), root))
            proofs.extend(
                EventProof(key=self.public, sig=sig, index=i, count=len(leaves), path=path)
                for i, path in enumerate(paths)
            )
        return proofs


# Trees a ``Verifier`` remembers the nodes of (up to 2 * LEAVES_PER_ROOT - 1 hashes each).
VERIFIED_TREES: Final = 1024


@dataclass
class Verifier:
    """Checks events' proofs against their origin devices' keys.

    It remembers the nodes of the trees whose root it verified, keyed by signature and place
    (level, position): a later leaf of the same tree climbs only until it meets one, usually
    after one hash instead of one per level, and its signature is not checked again. The rest
    of its path is still checked for shape, so a proof with a wrong or padded path is refused
    against what is remembered, so only whole, valid proofs are stored and served on.
    """

    group: str
    _trees: dict[tuple[bytes, bytes, int], dict[tuple[int, int], bytes]] = field(
        default_factory=dict, repr=False
    )
    _owners: dict[bytes, str] = field(default_factory=dict, repr=False)  # key -> device id

    def _owner(self, key: bytes) -> str:
        """The device id ``key`` derives to (``""``: not a key)."""
        owner = self._owners.get(key)
        if owner is None:
            owner = key_owner(key)
            if not owner:
                return ""
            if len(self._owners) >= VERIFIED_ROOTS:
                self._owners.clear()
            self._owners[key] = owner
        return owner

    def verify_many(
        self, items: Sequence[tuple[str, int, bytes, EventProof]]
    ) -> list[ForgedEvent | None]:
        """``verify`` each ``(origin, seq, event, proof)``; return, per item, why it is refused
        (``None``: it verified).

        A batch usually carries whole trees: the leaves of one signature, each once. Such a
        tree is checked at once (``_whole_tree``: its root built from its leaves, each proof's
        path compared with the one that tree gives, one signature check); every other item,
        and every item of a tree that fails that check, goes through ``verify``, which says
        what is wrong.
        """
        trees: dict[tuple[str, bytes, bytes, int], list[int]] = {}
        for i, (origin, _, _, proof) in enumerate(items):
            trees.setdefault((origin, proof.key, proof.sig, proof.count), []).append(i)
        refused: list[ForgedEvent | None] = [None] * len(items)
        for (origin, key, sig, count), members in trees.items():
            if len(members) == count and self._whole_tree(origin, key, sig, members, items):
                continue
            for i in members:
                try:
                    self.verify(*items[i])
                except ForgedEvent as exc:
                    refused[i] = exc
        return refused

    def _whole_tree(
        self,
        origin: str,
        key: bytes,
        sig: bytes,
        members: list[int],
        items: Sequence[tuple[str, int, bytes, EventProof]],
    ) -> bool:
        """Whether ``members`` are every leaf of one tree signed by ``origin``'s key, each
        with exactly the path that tree gives it."""
        if self._owner(key) != origin:
            return False  # ``verify`` says why
        proofs = [items[i][3] for i in members]
        if [p.index for p in proofs] != list(range(len(members))):  # else in leaf order
            members = sorted(members, key=lambda i: items[i][3].index)
            proofs = [items[i][3] for i in members]
            if [p.index for p in proofs] != list(range(len(members))):
                return False
        group = self.group
        root, paths = merkle_paths(
            [leaf_hash(group, items[i][0], items[i][1], items[i][2]) for i in members]
        )
        if any(proof.path != path for proof, path in zip(proofs, paths, strict=True)):
            return False
        return verify_signature(key, sig, batch_message(group, len(proofs), root))

    def verify(self, origin: str, seq: int, event: bytes, proof: EventProof) -> None:
        """Check that ``origin``'s device signed ``event`` at ``seq``.

        Raises:
            ForgedEvent: the key is not the origin's, the path does not lead to a root, or
                the signature of that root is not the key's.
        """
        owner = self._owner(proof.key)
        if not owner:
            raise ForgedEvent(origin, seq, "malformed signing key")
        if owner != origin:
            raise ForgedEvent(origin, seq, "signed by another device's key")
        seen = (proof.key, proof.sig, proof.count)
        known = self._trees.get(seen)
        index, width, path = proof.index, proof.count, proof.path
        if not 0 <= index < width or len(path) > _MAX_PATH:
            raise ForgedEvent(origin, seq, "its merkle path does not fit")
        node: bytes | None = leaf_hash(self.group, origin, seq, event)
        climbed: list[tuple[tuple[int, int], bytes]] = []
        level = used = 0
        while True:
            if node is not None:
                if known is not None and known.get((level, index)) == node:
                    node = None  # in a verified tree: the rest of the path must match it
                else:
                    climbed.append(((level, index), node))
            if width == 1:
                break
            if index % 2 or index != width - 1:  # else the odd node out, carried up unhashed
                if used >= len(path) or len(path[used]) != 32:
                    raise ForgedEvent(origin, seq, "its merkle path does not fit")
                sibling = path[used]
                if node is not None:
                    climbed.append(((level, index ^ 1), sibling))
                    node = _node(sibling, node) if index % 2 else _node(node, sibling)
                elif known is not None and known.get((level, index ^ 1)) != sibling:
                    # Above a remembered node every node is remembered: the path must match.
                    raise ForgedEvent(origin, seq, "its merkle path does not fit")
                used += 1
            index, width, level = index // 2, (width + 1) // 2, level + 1
        if used != len(path):
            raise ForgedEvent(origin, seq, "its merkle path does not fit")
        if node is None:  # met the remembered tree: what it climbed to get there is in it too
            if known is not None:
                known.update(climbed)
            return
        if not verify_signature(proof.key, proof.sig, batch_message(self.group, proof.count, node)):
            raise ForgedEvent(origin, seq, "bad signature")
        if known is None or known.get((level, 0)) != node:
            if len(self._trees) >= VERIFIED_TREES:
                self._trees.clear()
            known = self._trees[seen] = {}
        known.update(climbed)
