"""Parse and format device ids, short ids, agent addresses, targets and event ids.

Every function here is pure and total: it returns a value or raises ``InvalidAddress``.

- A **device id** is 26 lower-case base32 characters of SHA-256 over the device's Ed25519
  public key (130 bits): long enough never to collide, short enough to read in a log line.
- A **short id** is the first ``n`` (at least 4) letters of the device id's base-26 rendering,
  upper case (``BOXE``). Groups lengthen it only where two devices collide (``short_ids``).
- An **agent name** is 1 to 32 characters of ``a-z 0-9 _ . -``, starting with a letter or digit.
  Names are case-insensitive and stored in lower case.
- An **address** is ``name:SHORT``. A **target** (what ``send`` takes) is ``@name``,
  ``@name:SHORT``, ``name``, ``name:SHORT``, ``#room`` or ``@all``.
- An **event id** is ``(origin device id, seq)``; its text form is ``origin/seq``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from switchboard.errors import InvalidAddress

DEVICE_ID_LENGTH: Final = 26
MIN_SHORT_LENGTH: Final = 4
MAX_NAME_LENGTH: Final = 32

_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,31}")
_SHORT_RE: Final = re.compile(r"[A-Z]{4,26}")
_DEVICE_RE: Final = re.compile(r"[a-z2-7]{26}")
_ROOM_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
# A tag starts with a letter, so "+1" in a message is never taken for a tag target.
_TAG_RE: Final = re.compile(r"[a-z][a-z0-9_.\-]{0,31}")
#: Most tags one agent may carry.
MAX_TAGS: Final = 20
_RESERVED_NAMES: Final = frozenset({"all", "everyone", "here"})


def device_id_from_public_key(public_key: bytes) -> str:
    """Return the device id for a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidAddress(f"public key of {len(public_key)} bytes, expected 32")
    digest = hashlib.sha256(b"switchboard device id v1\x00" + public_key).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:DEVICE_ID_LENGTH]


def parse_device_id(text: str) -> str:
    """Validate a full device id."""
    if not _DEVICE_RE.fullmatch(text):
        raise InvalidAddress(f"invalid device id {text[:40]!r}")
    return text


def short_id(device_id: str, length: int = MIN_SHORT_LENGTH) -> str:
    """Return the ``length``-letter short id of a device id (``BOXE``)."""
    digest = hashlib.sha256(b"switchboard short id v1\x00" + device_id.encode()).digest()
    number = int.from_bytes(digest, "big")
    letters = []
    for _ in range(length):
        number, rest = divmod(number, 26)
        letters.append(chr(ord("A") + rest))
    return "".join(letters)


def short_ids(device_ids: list[str] | set[str] | frozenset[str]) -> dict[str, str]:
    """Return the short id of each device, lengthened only where two of them collide."""
    result: dict[str, str] = {}
    pending = sorted(device_ids)
    length = MIN_SHORT_LENGTH
    while pending:
        counts: dict[str, int] = {}
        for device in pending:
            counts[short_id(device, length)] = counts.get(short_id(device, length), 0) + 1
        still = []
        for device in pending:
            short = short_id(device, length)
            if counts[short] == 1 or length >= DEVICE_ID_LENGTH:
                result[device] = short
            else:
                still.append(device)
        pending = still
        length += 1
    return result


def parse_short(text: str) -> str:
    """Validate and normalise a short id (case-insensitive input, upper-case output)."""
    short = text.upper()
    if not text.isascii() or not _SHORT_RE.fullmatch(short):
        raise InvalidAddress(f"invalid device short id {text[:40]!r}: expected 4 or more letters")
    return short


def parse_name(text: str) -> str:
    """Validate and normalise an agent name."""
    name = text.lower()
    if not text.isascii() or not _NAME_RE.fullmatch(name):
        raise InvalidAddress(
            f"invalid agent name {text[:40]!r}: use 1 to {MAX_NAME_LENGTH} letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    if name in _RESERVED_NAMES:
        raise InvalidAddress(f"agent name {name!r} is reserved")
    return name


def parse_room(text: str) -> str:
    """Validate and normalise a room name (without its ``#``)."""
    room = text.lower()
    if not text.isascii() or not _ROOM_RE.fullmatch(room):
        raise InvalidAddress(f"invalid room name {text[:40]!r}")
    return room


def parse_tag(text: str) -> str:
    """Validate and normalise a tag (without its ``+``): a letter, then letters, digits,
    ``_``, ``.`` or ``-``, at most 32 in all; upper case is folded to lower."""
    tag = text.strip().lower()
    if not tag.isascii() or not _TAG_RE.fullmatch(tag):
        raise InvalidAddress(
            f"invalid tag {text[:40]!r}: a letter, then letters, digits, '_', '.' or '-'"
        )
    return tag


def format_address(name: str, short: str) -> str:
    """Return ``name:SHORT``."""
    return f"{name}:{short}"


@dataclass(frozen=True, slots=True)
class Address:
    """An agent's address: a name and a device short id (``luna:BOXE``)."""

    name: str
    device: str

    def __str__(self) -> str:
        return format_address(self.name, self.device)


def parse_address(text: str) -> Address:
    """Parse ``name:SHORT`` (an optional leading ``@`` is allowed)."""
    body = text[1:] if text.startswith("@") else text
    name, sep, device = body.partition(":")
    if not sep:
        raise InvalidAddress(f"invalid address {text[:60]!r}: expected name:DEVICE")
    return Address(parse_name(name), parse_short(device))


@dataclass(frozen=True, slots=True)
class AgentTarget:
    """Every agent called ``name`` in the group, or on one device when ``device`` is set."""

    name: str
    device: str | None = None

    def __str__(self) -> str:
        return f"@{self.name}" + (f":{self.device}" if self.device else "")


@dataclass(frozen=True, slots=True)
class RoomTarget:
    """Every member of a room."""

    room: str

    def __str__(self) -> str:
        return f"#{self.room}"


@dataclass(frozen=True, slots=True)
class TagTarget:
    """Every listed agent of the group carrying a tag (``+backend``)."""

    tag: str

    def __str__(self) -> str:
        return f"+{self.tag}"


@dataclass(frozen=True, slots=True)
class AllTarget:
    """Every agent of the group."""

    def __str__(self) -> str:
        return "@all"


Target = AgentTarget | RoomTarget | TagTarget | AllTarget


def parse_target(text: str) -> Target:
    """Parse a ``send`` target: ``@name``, ``@name:DEV``, ``name:DEV``, ``#room``, ``+tag`` or
    ``@all``."""
    text = text.strip()
    if not text:
        raise InvalidAddress("empty target")
    if text.startswith("#"):
        return RoomTarget(parse_room(text[1:]))
    if text.startswith("+"):
        return TagTarget(parse_tag(text[1:]))
    body = text[1:] if text.startswith("@") else text
    if body.lower() == "all":
        return AllTarget()
    name, sep, device = body.partition(":")
    if sep:
        return AgentTarget(parse_name(name), parse_short(device))
    return AgentTarget(parse_name(name))


@dataclass(frozen=True, slots=True, order=True)
class EventId:
    """The global id of an event: its origin device and its sequence number there."""

    origin: str
    seq: int

    def __str__(self) -> str:
        return f"{self.origin}/{self.seq}"


def parse_event_id(text: str) -> EventId:
    """Parse ``origin/seq``."""
    origin, sep, seq = text.partition("/")
    # isdigit() alone accepts "²" and other non-ASCII digits that int() rejects, and int()
    # refuses more than 4300 digits; 19 digits cover every seq (at most 2**62).
    if not sep or not (seq.isascii() and seq.isdigit()) or len(seq) > 19 or int(seq) < 1:
        raise InvalidAddress(f"invalid event id {text[:60]!r}: expected origin/seq")
    return EventId(parse_device_id(origin), int(seq))


# Memorable names for agents that do not bring one, as hcom and friends do.
NAMES: Final = [
    "luna",
    "nova",
    "orion",
    "vega",
    "lyra",
    "atlas",
    "iris",
    "juno",
    "rhea",
    "kai",
    "zara",
    "milo",
    "nico",
    "ada",
    "otto",
    "ruby",
    "echo",
    "sage",
    "wren",
    "ash",
    "cleo",
    "finn",
    "ivy",
    "jade",
    "leo",
    "mira",
    "nell",
    "opal",
    "pax",
    "quinn",
    "remy",
    "sol",
    "tess",
    "uma",
    "vale",
    "wade",
    "xena",
    "yara",
    "zeke",
    "bea",
    "cato",
    "dara",
    "elio",
    "faye",
    "gus",
    "hana",
    "ines",
    "jules",
    "kira",
    "lark",
]


def pick_name(taken: set[str] | frozenset[str], choice: int) -> str:
    """Return a memorable free name; ``choice`` (from the caller's random source) picks which.

    Falls back to ``name-N`` once every plain name is taken.
    """
    free = [name for name in NAMES if name not in taken]
    if free:
        return free[choice % len(free)]
    base = NAMES[choice % len(NAMES)]
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"
