"""Create, render and redeem group invites.

An invite carries everything a new device needs to join: the group id and name, the group
secret, the relay URL and the relay's identity key (so the joiner pins the relay from its first
connection) or, for a broker link, the broker login shared by the group (never this device's
TLS files). It is therefore a secret itself: it is printed once for the user to pass on and is
never logged.

Token form: ``sb1.`` followed by unpadded base64url of a MessagePack map. The version prefix
lets later token forms live beside this one.

Pairing codes (``PairCode``) are the short forms, and carry no secret of the group: a
*nameplate* (a small number the relay allocated for the invite) and a few words, which are the
password of a SPAKE2 exchange with the inviting device (``pake``, ``docs/pairing.md``). Forms:

- code: ``7-ember-violet`` (nameplate, two words: 16 bits, one online guess per attempt);
- phrase: ``ember violet tiger lemon`` (the first word names the nameplate, three words);
- link: ``switchboard://join?code=7-ember-violet&relay=ws%3A%2F%2Fhost%3A7787`` (a code and
  the relay where it meets; what the QR code holds).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, quote, urlsplit

import msgspec

from switchboard.errors import InvalidInvite
from switchboard.wordlist import INDEX, WORDS

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


LINK_PREFIX: Final = "switchboard://join"
# Nameplates a relay hands out: 1..256, so that a phrase's first word can name any of them.
MAX_NAMEPLATE: Final = len(WORDS)
CODE_WORDS: Final = 2  # words of a code after its nameplate
PHRASE_WORDS: Final = 3  # words of a phrase after its nameplate word
_CODE = re.compile(r"^([1-9][0-9]{0,2})((?:-[a-z]+){2,3})$")


@dataclass(frozen=True)
class PairCode:
    """A short pairing code: the relay's nameplate and the password words.

    ``relay`` is where the nameplate lives when the form says (a link); ``None`` otherwise.
    """

    nameplate: int
    words: tuple[str, ...]
    relay: str | None = None

    def __repr__(self) -> str:
        # The words are the password: keep them out of logs and tracebacks.
        return f"PairCode(nameplate={self.nameplate}, relay={self.relay!r})"

    @property
    def code(self) -> str:
        """The code form, ``7-ember-violet``; also the SPAKE2 password of every form."""
        return "-".join([str(self.nameplate), *self.words])

    @property
    def phrase(self) -> str:
        """The phrase form: the nameplate's word, then the words."""
        return " ".join([WORDS[self.nameplate - 1], *self.words])

    def link(self, relay: str) -> str:
        """The link form, naming the relay where the code meets."""
        return f"{LINK_PREFIX}?code={self.code}&relay={quote(relay, safe='')}"


def new_code(nameplate: int, word_indexes: list[int]) -> PairCode:
    """Build a code from a nameplate and random word indexes (the caller draws them)."""
    if not 1 <= nameplate <= MAX_NAMEPLATE:
        raise InvalidInvite(f"nameplate {nameplate} is out of range")
    return PairCode(nameplate, tuple(WORDS[i % len(WORDS)] for i in word_indexes))


def parse_pairing(text: str) -> PairCode | None:
    """Read a code, a phrase or a link; ``None`` when ``text`` is none of them (a token?).

    Raises:
        InvalidInvite: it looks like a code, phrase or link but is not a valid one.
    """
    text = text.strip()
    if len(text) > MAX_TOKEN_LENGTH:
        raise InvalidInvite(f"invite of {len(text)} characters is too long")
    if text.startswith(PREFIX):
        return None
    if text.lower().startswith(LINK_PREFIX):
        query = parse_qs(urlsplit(text).query)
        codes, relays = query.get("code", []), query.get("relay", [])
        if len(codes) != 1 or len(relays) > 1:
            raise InvalidInvite("damaged link: it needs one code= and at most one relay=")
        code = _parse_code(codes[0])
        if relays and urlsplit(relays[0]).scheme not in ("ws", "wss"):
            raise InvalidInvite("damaged link: its relay must be ws:// or wss://")
        return PairCode(code.nameplate, code.words, relays[0] if relays else None)
    lowered = text.lower()
    if _CODE.match(lowered):
        return _parse_code(lowered)
    words = lowered.replace(",", " ").split()
    if len(words) == 1 + PHRASE_WORDS and all(w.isalpha() for w in words):
        unknown = [w for w in words if w not in INDEX]
        if unknown:
            raise InvalidInvite(f"{unknown[0]!r} is not a word of pairing phrases: check spelling")
        return PairCode(INDEX[words[0]] + 1, tuple(words[1:]))
    if text and " " not in text and "." not in text and "-" in text:
        raise InvalidInvite("not a pairing code: expected NUMBER-WORD-WORD, like 7-ember-violet")
    return None


def _parse_code(text: str) -> PairCode:
    match = _CODE.match(text.strip().lower())
    if match is None:
        raise InvalidInvite("not a pairing code: expected NUMBER-WORD-WORD, like 7-ember-violet")
    nameplate, words = int(match.group(1)), tuple(match.group(2).split("-")[1:])
    unknown = [w for w in words if w not in INDEX]
    if unknown:
        raise InvalidInvite(f"{unknown[0]!r} is not a word of pairing codes: check spelling")
    if not 1 <= nameplate <= MAX_NAMEPLATE:
        raise InvalidInvite(f"no pairing code has nameplate {nameplate}")
    return PairCode(nameplate, words)
