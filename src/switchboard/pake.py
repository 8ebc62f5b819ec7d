"""The pairing exchange's cryptography: SPAKE2 on a short code, then two sealed messages.

No I/O: both sides are objects fed bytes and returning bytes, carried by whatever link (the
relay's rendezvous, ``links/rendezvous.py``). ``docs/pairing.md`` draws the exchange:

1. joiner -> host: ``JoinSide.start()``, its SPAKE2 message (side B).
2. host -> joiner: ``HostSide.answer(msg)``, its SPAKE2 message (side A). Both now hold a key
   that is the same only if both used the same code.
3. joiner -> host: ``JoinSide.hello(msg, payload)``, the joiner's name and device key, sealed
   with the joiner's direction key. Opening it is the host's proof that the code was right:
   ``HostSide.open_hello`` raises ``InvalidInvite`` otherwise, and the host then sends nothing
   more. A wrong guess so costs the guesser one online attempt and teaches it nothing, and
   nothing of the group ever leaves the host.
4. host -> joiner: ``HostSide.welcome(payload)``, the invite (group secret included) and the
   host's device key, sealed with the host's direction key; ``JoinSide.open_welcome``.

The SPAKE2 password is the whole code (nameplate and words, ``invites.PairCode.code``), and
the SPAKE2 identities name the protocol, so a transcript of one exchange says nothing about
another. Each direction has its own key (HKDF of the SPAKE2 key), so a message cannot be
reflected back to its sender.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B, SPAKEError

from switchboard.errors import InvalidInvite

_ID_HOST: Final = b"switchboard pairing v1 host"
_ID_JOIN: Final = b"switchboard pairing v1 joiner"
_NONCE: Final = 12
# A sealed message of the exchange at most (an invite with broker options fits many times).
MAX_SEALED: Final = 16 * 1024


def _direction_key(key: bytes, direction: bytes) -> ChaCha20Poly1305:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"switchboard pairing " + direction
    ).derive(key)
    return ChaCha20Poly1305(derived)


def _seal(aead: ChaCha20Poly1305, payload: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + aead.encrypt(nonce, payload, None)


def _open(aead: ChaCha20Poly1305, box: bytes) -> bytes:
    if not _NONCE < len(box) <= MAX_SEALED:
        raise InvalidInvite("wrong pairing code")
    try:
        return aead.decrypt(box[:_NONCE], box[_NONCE:], None)
    except InvalidTag:
        raise InvalidInvite("wrong pairing code") from None


def _finish(spake: SPAKE2_A | SPAKE2_B, message: bytes) -> bytes:
    try:
        key: bytes = spake.finish(message)
    except (SPAKEError, ValueError, TypeError):
        raise InvalidInvite("wrong pairing code (damaged exchange)") from None
    return key


class HostSide:
    """The inviting device's half of one attempt (a new one for every claimer)."""

    def __init__(self, code: str) -> None:
        self._spake = SPAKE2_A(code.encode(), idA=_ID_HOST, idB=_ID_JOIN)
        self._key: bytes | None = None
        self.answered = False
        self.proven = False

    def answer(self, joiner_message: bytes) -> bytes:
        """Take the joiner's SPAKE2 message; return ours."""
        self.answered = True
        mine: bytes = self._spake.start()
        self._key = _finish(self._spake, joiner_message)
        return mine

    def open_hello(self, box: bytes) -> bytes:
        """Open the joiner's hello; raises ``InvalidInvite`` when the code was wrong."""
        if self._key is None:
            raise InvalidInvite("pairing exchange out of order")
        payload = _open(_direction_key(self._key, b"joiner to host"), box)
        self.proven = True
        return payload

    def welcome(self, payload: bytes) -> bytes:
        """Seal the welcome: only after the hello proved the code (``open_hello``)."""
        if self._key is None or not self.proven:
            raise InvalidInvite("pairing exchange out of order")
        return _seal(_direction_key(self._key, b"host to joiner"), payload)


class JoinSide:
    """The joining device's half."""

    def __init__(self, code: str) -> None:
        self._spake = SPAKE2_B(code.encode(), idA=_ID_HOST, idB=_ID_JOIN)
        self._key: bytes | None = None

    def start(self) -> bytes:
        """Our SPAKE2 message, sent first."""
        message: bytes = self._spake.start()
        return message

    def hello(self, host_message: bytes, payload: bytes) -> bytes:
        """Take the host's SPAKE2 message; return our hello, sealed."""
        self._key = _finish(self._spake, host_message)
        return _seal(_direction_key(self._key, b"joiner to host"), payload)

    def open_welcome(self, box: bytes) -> bytes:
        """Open the host's welcome."""
        if self._key is None:
            raise InvalidInvite("pairing exchange out of order")
        return _open(_direction_key(self._key, b"host to joiner"), box)
