"""A group's keys across rotations: which key seals what, and how a new secret travels.

Theory of operation
-------------------
``switchboard device forget`` rotates a group's secret (``daemon/forget.py``). Every secret the
group ever had stays readable, so old events open for ever; new ones are sealed under the
newest, which the forgotten device never gets. A ``Keyring`` holds them all, by **key id**
(``key_id``: 4 bytes of HKDF over the secret), and answers the ``GroupKeys`` surface the links
use (``seal``, ``open``, ``auth``, directed frames):

- The group's first secret (the **root**) seals envelopes as before rotations existed (no tag),
  so nothing stored earlier changes. Every later key **tags** its envelopes: the box leads with
  the key id and the nonce's first salt bit is set (``crypto.TAGGED``), so a receiver knows
  which key to try, and that an envelope under a key it does not hold yet is *not yet
  readable* (``KeyMissing``) rather than tampered.
- A rotation is the event ``group_rekeyed`` (``events.GroupRekeyed``): the new key id, the one
  it replaces (``previous``), the new secret sealed to each remaining device's key
  (``seal_secret``: an X25519 sealed box to the device's Ed25519 key converted to X25519), and
  the forgotten devices with the last seq of each that stays in the log. It is itself sealed
  under ``previous``, whoever serves it, so a device that was offline during the rotation opens
  it with the key it has and learns the next one from it (``Keyring.learn``). So are its
  author's events before it (``Keyring.sealing_key``), whenever they are sealed: the author's
  link may send an event written just before the rotation only after it, and a forgotten
  device that could not open that one would hold the rotation behind a gap and never learn.
- The current key is found by walking rotations from the root: of the rotations of one key,
  the one with the smallest key id wins (two devices forgetting at once on a broker, where no
  relay orders them). A losing rotation's key stays readable; the device that made it forgets
  its devices again from the winner (``needs_rotation``).
- After a rotation, events sealed under a replaced key are accepted only from the devices that
  rotation kept, and a forgotten device's events only up to its cut-off (``admits``), so a
  forgotten device cannot write into the group with the keys it still has.

Nothing here logs or formats key material.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from nacl import bindings as nacl
from nacl.exceptions import CryptoError

from switchboard.crypto import TAGGED, GroupKeys, public_bytes
from switchboard.errors import TamperedDirect, TamperedEnvelope, UserError
from switchboard.events import Event, GroupRekeyed, body_of
from switchboard.ids import device_id_from_public_key
from switchboard.proto.frames import Direct, Envelope

KID_SIZE: Final = 4


class KeyMissing(TamperedEnvelope):
    """An envelope is sealed under a key of the group this device does not hold (yet)."""

    def __init__(self, origin: str, seq: int) -> None:
        super().__init__(origin, seq)
        self.args = (f"envelope {seq} from device {origin[:12]} is sealed under a key not held",)


def key_id(secret: bytes) -> bytes:
    """The 4-byte id of a group secret (not secret: it names the key in envelopes)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KID_SIZE, salt=b"switchboard v1", info=b"key id"
    ).derive(secret)


def seal_secret(device_key: bytes, secret: bytes) -> bytes:
    """Seal a group secret to one device's Ed25519 public key (X25519 sealed box)."""
    try:
        x25519 = nacl.crypto_sign_ed25519_pk_to_curve25519(device_key)
    except (CryptoError, ValueError) as exc:
        raise UserError("a device's key is malformed; cannot seal the new secret to it") from exc
    return nacl.crypto_box_seal(secret, x25519)


def open_secret(identity: Ed25519PrivateKey, box: bytes) -> bytes | None:
    """Open a secret sealed to this device (``seal_secret``); ``None`` if it does not open."""
    seed = identity.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = public_bytes(identity)
    try:
        secret_key = nacl.crypto_sign_ed25519_sk_to_curve25519(seed + public)
        public_key = nacl.crypto_sign_ed25519_pk_to_curve25519(public)
        secret: bytes = nacl.crypto_box_seal_open(box, public_key, secret_key)
    except (CryptoError, ValueError):
        return None
    return secret


@dataclass(frozen=True)
class Rotation:
    """One ``group_rekeyed``: ``previous`` replaced by ``kid``, kept for ``members``."""

    kid: bytes
    previous: bytes
    author: str
    members: frozenset[str]
    forgotten: tuple[tuple[str, int], ...] = ()
    # The rotation event's seq in its author's log (0: not known).
    seq: int = 0


@dataclass(eq=False)
class Keyring:
    """Every key of one group, the current one, and the rotations between them."""

    group: str
    root: bytes  # the first secret's key id: its envelopes carry no tag
    _keys: dict[bytes, GroupKeys] = field(default_factory=dict, repr=False)
    _secrets: dict[bytes, bytes] = field(default_factory=dict, repr=False)
    rotations: dict[bytes, Rotation] = field(default_factory=dict)
    # The key an invite named as current, until the rotations leading to it are known.
    pinned: bytes = b""
    current: bytes = field(init=False, default=b"")
    # Forgotten devices and the last seq of each that stays in the log.
    forgotten: dict[str, int] = field(default_factory=dict)
    # Bumped whenever a key is added (links retry what they could not open).
    generation: int = 0
    # Per author, ``(seq, previous)`` of each rotation it made, by seq (``sealing_key``).
    _authored: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.current = self.pinned or self.root

    @classmethod
    def single(cls, group: str, secret: bytes) -> Keyring:
        """A keyring of a group that never rotated."""
        ring = cls(group=group, root=key_id(secret))
        ring.add(secret)
        return ring

    # -- keys ----------------------------------------------------------------------------------

    def add(self, secret: bytes) -> bytes:
        """Hold a secret (idempotent); return its key id."""
        kid = key_id(secret)
        if kid not in self._keys:
            self._keys[kid] = GroupKeys.derive(self.group, secret)
            self._secrets[kid] = secret
            self.generation += 1
            self._resolve()
        return kid

    def holds(self, kid: bytes) -> bool:
        return kid in self._keys

    def secret(self, kid: bytes) -> bytes | None:
        """The secret of a key held (to store or pass on in an invite)."""
        return self._secrets.get(kid)

    def known_secrets(self) -> list[bytes]:
        """Every secret held, the root's first and the current one's last."""
        order = [self.root, *(k for k in self._secrets if k not in (self.root, self.current))]
        order.append(self.current)
        return [self._secrets[k] for k in dict.fromkeys(order) if k in self._secrets]

    @property
    def keys(self) -> GroupKeys:
        """The current key's ``GroupKeys``."""
        return self._keys[self.current]

    @property
    def auth(self) -> Ed25519PrivateKey:
        """The current group auth key (relay handshakes)."""
        return self.keys.auth

    @property
    def auth_public(self) -> bytes:
        return self.keys.auth_public

    def auth_of(self, kid: bytes) -> bytes | None:
        keys = self._keys.get(kid)
        return keys.auth_public if keys is not None else None

    # -- rotations -----------------------------------------------------------------------------

    def learn(self, rotation: Rotation) -> None:
        """Record a rotation (its key may or may not be held) and move to the current key."""
        if rotation.kid in self.rotations:
            return
        self.rotations[rotation.kid] = rotation
        if rotation.seq:
            mine = self._authored.setdefault(rotation.author, [])
            mine.append((rotation.seq, rotation.previous))
            mine.sort()
        for device, seq in rotation.forgotten:
            self.forgotten[device] = max(seq, self.forgotten.get(device, 0))
        self.generation += 1
        self._resolve()

    def _resolve(self) -> None:
        kid, seen = self.root, {self.root}
        while True:
            nxt = self._winner(kid)
            if nxt is None or nxt in seen or nxt not in self._keys:
                break
            kid = nxt
            seen.add(kid)
        pinned = self.pinned
        if pinned and pinned not in seen and pinned in self._keys and pinned not in self.rotations:
            kid = pinned  # the invite's key: the rotations to it arrive later
        self.current = kid

    def _winner(self, kid: bytes) -> bytes | None:
        if not self.rotations:  # a group that never rotated: asked for every event received
            return None
        successors = [r.kid for r in self.rotations.values() if r.previous == kid]
        return min(successors) if successors else None

    def sealing_key(self, origin: str, seq: int) -> bytes | None:
        """The key an event of ``origin`` travels under if not the current one: the key
        replaced by the first rotation ``origin`` made at or after ``seq`` (``None``: current)."""
        mine = self._authored.get(origin)
        if mine is None:
            return None
        for at, previous in mine:
            if at >= seq:
                return previous if previous in self._keys else None
        return None

    def hold_up_to(self, device: str, seq: int) -> bool:
        """A kept device held ``device``'s events up to ``seq`` before it learned that it was
        forgotten (``forgotten_held``): the cut-off rises to it. Returns whether it rose."""
        if device not in self.forgotten or seq <= self.forgotten[device]:
            return False
        self.forgotten[device] = seq
        self.generation += 1
        return True

    def is_forgotten(self, device: str) -> bool:
        """Whether the current key's rotation, or the one this device lacks, left it out."""
        nxt = self._winner(self.current)
        if nxt is not None and nxt not in self._keys:
            return device not in self.rotations[nxt].members
        return device in self.forgotten

    def admits(self, origin: str, seq: int, kid: bytes) -> str | None:
        """Why an event sealed under ``kid`` must be refused, or ``None`` if it is admitted."""
        cutoff = self.forgotten.get(origin)
        if cutoff is not None and seq > cutoff:
            return "written by a device forgotten from the group"
        nxt = self._winner(kid)
        if nxt is not None and cutoff is None and origin not in self.rotations[nxt].members:
            return "sealed under a replaced key by a device the rotation did not keep"
        return None

    def needs_rotation(self, device: str) -> list[str]:
        """Devices this device forgot that the current key's rotations still keep.

        A rotation that lost to a concurrent one (``_winner``) leaves its forgotten devices
        in the winner's members; its author forgets them again from the winner.
        """
        mine = {d for r in self.rotations.values() if r.author == device for d, _ in r.forgotten}
        rotation = self.rotations.get(self.current)
        if rotation is None:
            return []
        return sorted(mine & rotation.members)

    # -- the GroupKeys surface -----------------------------------------------------------------

    def seal(self, origin: str, seq: int, plaintext: bytes, kid: bytes | None = None) -> Envelope:
        """Seal under ``kid`` (default: the current key)."""
        kid = self.current if kid is None or kid not in self._keys else kid
        tag = b"" if kid == self.root else kid
        return self._keys[kid].seal(origin, seq, plaintext, tag)

    def open(self, envelope: Envelope) -> bytes:
        """Open an envelope under whichever key it names (``open_keyed``)."""
        return self.open_keyed(envelope)[0]

    def open_keyed(self, envelope: Envelope) -> tuple[bytes, bytes]:
        """Open an envelope; return the plaintext and the id of the key that opened it.

        Raises:
            KeyMissing: it names a key this device does not hold.
            TamperedEnvelope: it does not open.
        """
        nonce, box = envelope.nonce, envelope.box
        if len(nonce) > 8 and nonce[8] & TAGGED and len(box) > KID_SIZE:
            kid = bytes(box[:KID_SIZE])
            keys = self._keys.get(kid)
            if keys is not None and kid != self.root:
                return keys.open(envelope, kid), kid
            if keys is None:
                raise KeyMissing(envelope.origin, envelope.seq)
        return self._keys[self.root].open(envelope), self.root

    def seal_direct(
        self, identity: Ed25519PrivateKey, recipient: str, ref: int, plaintext: bytes
    ) -> Direct:
        return self.keys.seal_direct(identity, recipient, ref, plaintext)

    def open_direct(self, frame: Direct, recipient: str) -> bytes:
        """Open a directed frame under the current key, else under any other held."""
        order = [self.current, *(k for k in self._keys if k != self.current)]
        failure: TamperedDirect | None = None
        for kid in order:
            try:
                return self._keys[kid].open_direct(frame, recipient)
            except TamperedDirect as exc:
                if "failed to open" not in str(exc):
                    raise
                failure = exc
        assert failure is not None
        raise failure


def rotation_of(event: Event) -> Rotation | None:
    """The rotation a ``group_rekeyed`` event records, or ``None`` if it does not fit."""
    try:
        body = body_of(event)
        if not isinstance(body, GroupRekeyed):
            return None
        kid, previous = bytes.fromhex(body.key), bytes.fromhex(body.previous)
    except (ValueError, TypeError, msgspec.ValidationError):
        return None
    if len(kid) != KID_SIZE or len(previous) != KID_SIZE or event.origin in body.forgotten:
        return None
    forgotten = tuple(sorted((d, int(s)) for d, s in body.forgotten.items()))
    return Rotation(kid, previous, event.origin, frozenset(body.secrets), forgotten, event.seq)


def learn_rotation(ring: Keyring, identity: Ed25519PrivateKey, event: Event) -> bytes | None:
    """Learn a rotation from its event; take its secret if it was sealed to this device.

    Returns the new secret when this device got it (the daemon stores it), else ``None``.
    """
    rotation = rotation_of(event)
    if rotation is None:
        return None
    me = device_id_from_public_key(public_bytes(identity))
    secret = None
    sealed = event.data.get("secrets", {}).get(me)
    if isinstance(sealed, str):
        try:
            secret = open_secret(identity, bytes.fromhex(sealed))
        except ValueError:
            secret = None
        if secret is not None and key_id(secret) != rotation.kid:
            secret = None
        if secret is not None:
            ring.add(secret)
    ring.learn(rotation)
    return secret


def load(
    group: str,
    current: bytes,
    rows: Iterable[tuple[bytes, bytes | None, bytes | None, str, list[str], dict[str, int], int]],
    root: bytes | None,
) -> Keyring:
    """Rebuild a keyring from the store (``store/keys.py``).

    Args:
        group: the group id.
        current: the group row's secret (the key it last sealed with).
        rows: ``(kid, secret or None, previous or None, author, members, forgotten, seq)``.
        root: the root's key id, or ``None`` when the group never rotated.
    """
    ring = Keyring(group=group, root=root or key_id(current), pinned=key_id(current))
    ring.add(current)
    rotations = []
    for kid, secret, previous, author, members, forgotten, seq in rows:
        if secret is not None:
            ring.add(secret)
        if previous is not None:
            cut = tuple(forgotten.items())
            rotations.append(Rotation(kid, previous, author, frozenset(members), cut, seq))
    for rotation in rotations:
        ring.learn(rotation)
    return ring
