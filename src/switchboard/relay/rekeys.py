"""Checking a device's request to replace its group's auth key (``frames.Rekey``).

A ``Rekey`` arrives as the box of a ``Direct`` frame addressed to the relay itself. It is
accepted only from the device its connection proved, logged in with the group's current key
(the mailbox checks that last, atomically), when the new key signed ``handshake.rekey_message``
over the group, the old key, the new one and the lists, and when the device does not forget
itself.
"""

from __future__ import annotations

import msgspec

from switchboard.crypto import verify_signature
from switchboard.proto.frames import Direct, Rekey, decode_rekey
from switchboard.proto.handshake import rekey_message


def check_rekey(group: str, device: str, logged_in_with: bytes, frame: Direct) -> Rekey | str:
    """Return the request if it may go to the mailbox, else why it is refused."""
    if frame.sender != device:
        return "sender is not the device of this connection"
    try:
        rekey = decode_rekey(frame.box)
    except msgspec.DecodeError:
        return "not a rekey request"
    if device in rekey.forgotten:
        return "a device cannot forget itself"
    message = rekey_message(group, logged_in_with, rekey.key, rekey.members, rekey.forgotten)
    if not verify_signature(rekey.key, rekey.proof, message):
        return "the new key's proof is invalid"
    return rekey
