"""Create, render and redeem group invites.

An invite carries everything a new device needs to join: the group id and name, the group
secret, the relay URL and the relay's identity key (so the joiner pins the relay from its first
connection) or, for a broker link, the broker login shared by the group (never this device's
TLS files). It is therefore a secret itself: it is printed once for the user to pass on and is
never logged.

Token form: ``sb1.`` followed by unpadded base64url of a MessagePack map. The version prefix
lets later token forms (short codes, words) live beside this one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

import msgspec

from switchboard.errors import InvalidInvite

PREFIX: Final = "sb1."
# Invites are pasted through chat windows and terminals; anything longer is not one of ours.
MAX_TOKEN_LENGTH: Final = 4096


class _Wire(msgspec.Struct, frozen=True):
    g: str
    n: str
    s: bytes
    r: str
    k: bytes | None = None
    o: str | None = None  # broker login for broker links (JSON; transports.options.LinkOptions)
    h: list[bytes] | None = None  # the group's earlier secrets, its first one first (keyring)


@dataclass(frozen=True)
class Invite:
    """What a device needs to join a group."""

    group: str
    name: str
    secret: bytes
    relay: str
    relay_key: bytes | None = None
    link_options: str | None = None
    # Secrets the group had before ``secret`` (rotated by ``device forget``), the first one
    # first: a joiner reads the events sealed under them.
    history: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        # Keep the secret out of logs and tracebacks.
        return f"Invite(group={self.group!r}, name={self.name!r}, relay={self.relay!r})"


def render(invite: Invite) -> str:
    """Return the invite as a token to copy and paste."""
    wire = _Wire(
        g=invite.group,
        n=invite.name,
        s=invite.secret,
        r=invite.relay,
        k=invite.relay_key,
        o=invite.link_options,
        h=list(invite.history) or None,
    )
    raw = msgspec.msgpack.encode(wire)
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse(token: str) -> Invite:
    """Parse an invite token.

    Raises:
        InvalidInvite: the token is not a well-formed invite.
    """
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidInvite(f"invite of {len(token)} characters is too long")
    if not token.startswith(PREFIX):
        raise InvalidInvite("not a switchboard invite (expected a token starting with 'sb1.')")
    body = token[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        wire = msgspec.msgpack.decode(raw, type=_Wire)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInvite("invite is damaged: check that it was copied whole") from exc
    if len(wire.s) != 32 or not wire.g or not wire.r:
        raise InvalidInvite("invite is damaged: check that it was copied whole")
    if wire.k is not None and len(wire.k) != 32:
        raise InvalidInvite("invite is damaged: bad relay key")
    if any(len(old) != 32 for old in wire.h or ()):
        raise InvalidInvite("invite is damaged: bad earlier secret")
    return Invite(
        group=wire.g,
        name=wire.n,
        secret=wire.s,
        relay=wire.r,
        relay_key=wire.k,
        link_options=wire.o,
        history=tuple(wire.h or ()),
    )
