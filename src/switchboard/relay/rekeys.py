"""Checking a device's request to replace its group's auth key (``frames.Rekey``).

A ``Rekey`` arrives as the box of a ``Direct`` frame addressed to the relay itself. It is
accepted only from the device its connection proved, logged in with the group's current key
(the mailbox checks that last, atomically), when the new key signed ``handshake.rekey_message``
over the group, the old key, the new one and the lists, and when the device does not forget
itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from switchboard.crypto import verify_signature
from switchboard.errors import ByeCode
from switchboard.proto.frames import Direct, Rekey, UndeliveredCode, decode_rekey
from switchboard.proto.handshake import rekey_message
from switchboard.relay.mailbox import Mailbox

if TYPE_CHECKING:
    from switchboard.relay.connection import Connection
    from switchboard.relay.mailbox import MailboxThread
    from switchboard.relay.registry import Registry

logger = logging.getLogger("switchboard.relay")


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


async def apply_rekey(
    box: MailboxThread, registry: Registry, conn: Connection, frame: Direct
) -> None:
    """Answer a device's ``Rekey``: it must be logged in with the current key and prove it
    holds the new one; then the group's key is replaced and forgotten devices are dropped."""
    code = UndeliveredCode.REFUSED
    rekey = check_rekey(conn.group, conn.device, conn.offered_key, frame)
    if isinstance(rekey, str):
        reason = rekey
    elif await box.call(
        Mailbox.rekey_group, conn.group, conn.offered_key, rekey.key, rekey.members,
        rekey.forgotten,
    ):  # fmt: skip
        code, reason = UndeliveredCode.REKEYED, "group key replaced"
        conn.offered_key = rekey.key
        for device in set(rekey.forgotten):
            target = registry.device(conn.group, device)
            if target is not None and target.session.is_open:
                target.session.send_bye(ByeCode.AUTH_FAILED, "device removed from the group")
                target.flush()
        logger.info("= group %s rekeyed by %s", conn.group[:12], conn.label)
    else:
        reason = "the group's key changed meanwhile (another device rotated it)"
    if conn.session.is_open:
        conn.session.send_undelivered(frame.recipient, frame.ref, code, reason)
        conn.flush()
