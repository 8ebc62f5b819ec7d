"""Group keys and the sealing of envelopes, so relays and brokers see only ciphertext.

Theory of operation
-------------------
A group has a random 256-bit secret, carried only in invites and in each member's home
(file mode 0600). HKDF-SHA256 derives two independent things from it:

- the **group auth key**: an Ed25519 key pair whose seed is ``HKDF(secret, "auth")``. Members
  prove membership by signing handshake challenges; relays know only the public half, which
  the creating device registers, so a relay can check members but can never pose as one, and
  it never holds anything that opens an envelope;
- the **seal key**: ``HKDF(secret, "seal")``, from which each origin device gets its own
  ChaCha20-Poly1305 key ``HKDF(seal key, "origin" + device id)``.

Every event travels as an ``Envelope(origin, seq, nonce, box)``. The associated data is the
header ``(group, origin, seq)``, so a relay cannot move an envelope to another group, origin
or position without the open failing.

Why a nonce never repeats under one key: keys are per origin, and the 96-bit nonce is
``seq`` (64 bits, big-endian) followed by 32 random bits, drawn once per ``GroupKeys`` (each
time a process loads a group; drawing them per envelope cost a syscall and bought nothing).
Two different events of one origin have different ``seq`` (the origin's single writer assigns
each ``seq`` once, in the same transaction that stores the event), so their nonces differ
whatever the random bits are. The same event sealed twice (re-sent after a reconnect, or
re-served by another member) reuses a nonce only if the random bits also match, and then seals
the *same* plaintext under the same header, which yields the same ciphertext and reveals
nothing. The random bits guard the one case left: a home restored from an old backup
re-issues a ``seq`` for a new event, but only in a later process, whose random bits match the
first's with probability 2^-32 instead of certainly.

Per-device signatures
---------------------
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

Directed frames (``proto.frames.Direct``: a payload for one device, never stored) are sealed
the same way under a per-sender key ``HKDF(seal key, "direct" + sender)``, with a fresh random
96-bit nonce each (drawn per frame: these frames are few next to events, and carry no seq to
build a nonce from). The associated data is ``(group, sender, recipient, ref)``. A seal key
only proves membership of the group, and any member can derive every member's, so each frame
is also **signed by the sender's device key**: the frame carries that public key, the
receiver checks that the sender's id is the one derived from it (device ids are hashes of
device keys) and verifies the signature over SHA-256 of the header, nonce and box. A member
therefore cannot pose as another device, and a relay cannot move a frame to another
recipient, call or group, or alter it, undetected.

Nothing in this module logs or formats key material.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from nacl import bindings as sodium
from nacl.exceptions import BadSignatureError

from switchboard.errors import ForgedEvent, TamperedDirect, TamperedEnvelope, UserError
from switchboard.ids import device_id_from_public_key
from switchboard.proto.frames import Direct, Envelope

SECRET_SIZE: Final = 32
NONCE_SIZE: Final = 12
_SALT: Final = b"switchboard v1"
TAGGED: Final = 0x80  # the bit of an envelope's nonce salt that says its box leads with a key tag


def new_group_secret() -> bytes:
    """Return a fresh random 256-bit group secret."""
    return secrets.token_bytes(SECRET_SIZE)


def _hkdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(key)


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """Return the raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(public_key: bytes) -> str:
    """A device key's fingerprint for people to compare: 20 hex digits in groups of four."""
    digest = hashlib.sha256(b"switchboard fingerprint v1\x00" + public_key).hexdigest()[:20]
    return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


def key_owner(public_key: bytes) -> str:
    """Return the device id a device key derives to, or ``""`` for a malformed key.

    Both the directed channel (``open_direct``) and the event proofs (``Verifier``) check a
    signer's claimed id against this before trusting its signature.
    """
    try:
        return device_id_from_public_key(public_key)
    except UserError:
        return ""


# Ed25519 runs through libsodium (pynacl), not OpenSSL: it signs in ~17 us against ~28 us and
# verifies in ~44 us against ~92 us here. Keys stay ``cryptography`` objects (and files the
# same 32-byte seeds), and Ed25519 is deterministic, so the signatures are the same bytes.
# libsodium's 64-byte secret key (seed + public key) for each identity that signed; the entry
# holds the key object itself, so its ``id`` is not reused while cached.
_SECRETS: dict[int, tuple[Ed25519PrivateKey, bytes]] = {}
_MAX_SECRETS: Final = 64


def _secret_key(identity: Ed25519PrivateKey) -> bytes:
    known = _SECRETS.get(id(identity))
    if known is not None and known[0] is identity:
        return known[1]
    seed = identity.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    secret = sodium.crypto_sign_seed_keypair(seed)[1]
    if len(_SECRETS) >= _MAX_SECRETS:
        _SECRETS.clear()
    _SECRETS[id(identity)] = (identity, secret)
    return secret


def sign(identity: Ed25519PrivateKey, message: bytes) -> bytes:
    """Return ``identity``'s 64-byte Ed25519 signature of ``message`` (the same bytes as
    ``identity.sign(message)``, made by libsodium in about half the time)."""
    return sodium.crypto_sign(message, _secret_key(identity))[: sodium.crypto_sign_BYTES]


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Return whether ``signature`` is ``public_key``'s signature of ``message``."""
    if len(signature) != sodium.crypto_sign_BYTES or len(public_key) != 32:
        return False
    try:
        sodium.crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


def header(group: str, origin: str, seq: int) -> bytes:
    """Return the associated data that binds an envelope to its place."""
    return b"sb-envelope-v1\x00%s\x00%s\x00%d" % (group.encode(), origin.encode(), seq)


def _tag_aad(tag: bytes) -> bytes:
    return b"\x00key\x00" + tag if tag else b""


def direct_header(group: str, sender: str, recipient: str, ref: int) -> bytes:
    """Return the associated data that binds a directed frame to its place."""
    return b"sb-direct-v1\x00%s\x00%s\x00%s\x00%d" % (
        group.encode(),
        sender.encode(),
        recipient.encode(),
        ref,
    )


def _direct_digest(aad: bytes, nonce: bytes, box: bytes) -> bytes:
    # Signed instead of the frame itself: Ed25519 hashes its message twice, and a 64 KiB
    # chunk signs in ~75 us this way against ~540 us whole (docs/protocol.md §9).
    digest = hashlib.sha256(b"sb-direct-sig-v1\x00")
    for part in (aad, nonce, box):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


@dataclass
class GroupKeys:
    """Keys derived from one group's secret."""

    group: str
    auth: Ed25519PrivateKey
    seal_key: bytes = field(repr=False)
    _origins: dict[str, tuple[ChaCha20Poly1305, bytes]] = field(default_factory=dict, repr=False)
    _salt: bytes = field(default_factory=lambda: os.urandom(4), repr=False)
    _senders: dict[str, ChaCha20Poly1305] = field(default_factory=dict, repr=False)

    @classmethod
    def derive(cls, group: str, secret: bytes) -> GroupKeys:
        """Derive a group's keys from its secret.

        Raises:
            UserError: the secret is not 32 bytes.
        """
        if len(secret) != SECRET_SIZE:
            raise UserError(f"group secret of {len(secret)} bytes, expected {SECRET_SIZE}")
        auth = Ed25519PrivateKey.from_private_bytes(_hkdf(secret, b"auth"))
        return cls(group=group, auth=auth, seal_key=_hkdf(secret, b"seal"))

    @property
    def auth_public(self) -> bytes:
        """The public half of the group auth key, which relays keep."""
        return public_bytes(self.auth)

    def _cipher(self, origin: str, seq: int) -> tuple[ChaCha20Poly1305, bytes]:
        # An origin's cipher and the associated data of its envelope ``seq``; the cipher and
        # the header's prefix are made once per origin.
        known = self._origins.get(origin)
        if known is None:
            cipher = ChaCha20Poly1305(_hkdf(self.seal_key, b"origin" + origin.encode()))
            known = self._origins[origin] = (cipher, header(self.group, origin, 0)[:-1])
        return known[0], known[1] + b"%d" % seq

    def seal(self, origin: str, seq: int, plaintext: bytes, tag: bytes = b"") -> Envelope:
        """Seal one encoded event into an envelope.

        ``tag`` names the key in the envelope (``keyring``: every key of a group but its
        first): it leads the box, is bound by the associated data, and the nonce's first salt
        bit says it is there (clear in untagged envelopes).
        """
        first = self._salt[0] | TAGGED if tag else self._salt[0] & ~TAGGED
        salt = bytes([first]) + self._salt[1:]
        nonce = seq.to_bytes(8, "big") + salt
        cipher, aad = self._cipher(origin, seq)
        box = cipher.encrypt(nonce, plaintext, aad + _tag_aad(tag))
        return Envelope(origin=origin, seq=seq, nonce=nonce, box=tag + box)

    def open(self, envelope: Envelope, tag: bytes = b"") -> bytes:
        """Open an envelope and return the encoded event (``tag``: the one it leads with).

        Raises:
            TamperedEnvelope: the envelope was altered, moved or sealed with another key.
        """
        if len(envelope.nonce) != NONCE_SIZE or envelope.nonce[:8] != envelope.seq.to_bytes(
            8, "big", signed=False
        ):
            raise TamperedEnvelope(envelope.origin, envelope.seq)
        if tag and envelope.box[: len(tag)] != tag:
            raise TamperedEnvelope(envelope.origin, envelope.seq)
        cipher, aad = self._cipher(envelope.origin, envelope.seq)
        try:
            return cipher.decrypt(envelope.nonce, envelope.box[len(tag) :], aad + _tag_aad(tag))
        except InvalidTag as exc:
            raise TamperedEnvelope(envelope.origin, envelope.seq) from exc

    def _direct_cipher(self, sender: str) -> ChaCha20Poly1305:
        cipher = self._senders.get(sender)
        if cipher is None:
            cipher = self._senders[sender] = ChaCha20Poly1305(
                _hkdf(self.seal_key, b"direct" + sender.encode())
            )
        return cipher

    def seal_direct(
        self, identity: Ed25519PrivateKey, recipient: str, ref: int, plaintext: bytes
    ) -> Direct:
        """Seal and sign a payload for one device of the group.

        Args:
            identity: the sending device's key (the sender id is derived from it).
            recipient: the device id it is for.
            ref: the call it belongs to (``proto.channel``), in clear for ``Undelivered``.
            plaintext: the encoded channel message.
        """
        sender_key = public_bytes(identity)
        sender = device_id_from_public_key(sender_key)
        nonce = os.urandom(NONCE_SIZE)
        aad = direct_header(self.group, sender, recipient, ref)
        box = self._direct_cipher(sender).encrypt(nonce, plaintext, aad)
        signature = sign(identity, _direct_digest(aad, nonce, box))
        return Direct(
            sender=sender,
            recipient=recipient,
            ref=ref,
            sender_key=sender_key,
            nonce=nonce,
            box=box,
            signature=signature,
        )

    def open_direct(self, frame: Direct, recipient: str) -> bytes:
        """Check who sent a directed frame and open it; return the plaintext.

        Args:
            frame: the frame as received.
            recipient: this device's id: a frame for anyone else is refused.

        Raises:
            TamperedDirect: not for us, a sender id that is not its key's, a bad signature,
                or a box that does not open under the group's key.
        """
        if frame.recipient != recipient:
            raise TamperedDirect(frame.sender, "addressed to another device")
        if key_owner(frame.sender_key) != frame.sender:
            raise TamperedDirect(frame.sender, "sender id is not the one of its key (forged)")
        aad = direct_header(self.group, frame.sender, frame.recipient, frame.ref)
        digest = _direct_digest(aad, frame.nonce, frame.box)
        if not verify_signature(frame.sender_key, frame.signature, digest):
            raise TamperedDirect(frame.sender, "signature is invalid (altered or forged)")
        try:
            return self._direct_cipher(frame.sender).decrypt(frame.nonce, frame.box, aad)
        except InvalidTag as exc:
            raise TamperedDirect(frame.sender, "sealed box failed to open") from exc


def load_identity(path: Path) -> Ed25519PrivateKey | None:
    """Return the Ed25519 identity stored at ``path``, or ``None`` if there is none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) != 32:
        raise UserError(f"identity file {path} is damaged ({len(raw)} bytes, expected 32)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def create_identity(path: Path) -> Ed25519PrivateKey:
    """Create and store a new identity at ``path`` (mode 0600), or return the existing one.

    Safe against two processes racing: the file is created exclusively.
    """
    existing = load_identity(path)
    if existing is not None:
        return existing
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        loaded = load_identity(path)
        assert loaded is not None
        return loaded
    with os.fdopen(fd, "wb") as file:
        file.write(raw)
        file.flush()
        os.fsync(file.fileno())
    return key


# -- per-device signatures -----------------------------------------------------------------------

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

    def verify(self, origin: str, seq: int, event: bytes, proof: EventProof) -> None:
        """Check that ``origin``'s device signed ``event`` at ``seq``.

        Raises:
            ForgedEvent: the key is not the origin's, the path does not lead to a root, or
                the signature of that root is not the key's.
        """
        owner = self._owners.get(proof.key)
        if owner is None:
            owner = key_owner(proof.key)
            if not owner:
                raise ForgedEvent(origin, seq, "malformed signing key")
            if len(self._owners) >= VERIFIED_ROOTS:
                self._owners.clear()
            self._owners[proof.key] = owner
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
