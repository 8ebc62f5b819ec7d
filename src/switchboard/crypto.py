"""Group keys and the sealing of envelopes, so relays and brokers see only ciphertext.

Per-device signatures of events are ``signatures``.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

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

from switchboard.errors import TamperedDirect, TamperedEnvelope, UserError
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
