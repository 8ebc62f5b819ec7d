"""The MQTT topic layout of a group, in one place.

Every topic of a group lives under ``sb/<g>/`` where ``<g>`` is the first 16 hex digits of
SHA-256 over the group id: the broker (and anyone else on a public broker) sees neither the
group's name nor its id, let alone agent names or file paths. Device ids appear in topics; they
are random-looking public-key hashes that the envelope header carries in clear anyway.

=================================  =========================  ======================================
topic                              published by               payload
=================================  =========================  ======================================
``sb/<g>/ev/<device>``             the device, live           ``Batch`` of its own sealed events
``sb/<g>/to/<device>``             any device, on request     ``Batch`` answering the device's Have
``sb/<g>/have/<device>``           the device                 ``Have``: what it holds
``sb/<g>/presence/<device>``       the device; its last will  ``1`` online / ``0`` offline, retained
``sb/<g>/dm/<device>``             any device                 ``Direct``: a frame for it alone
=================================  =========================  ======================================

A device subscribes to ``ev/+``, ``have/+``, ``presence/+`` and its own ``to/<device>`` and
``dm/<device>``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Final, Literal

ROOT: Final = "sb"
Kind = Literal["ev", "to", "have", "presence", "dm"]
KINDS: Final[tuple[Kind, ...]] = ("ev", "to", "have", "presence", "dm")
ONLINE: Final = b"1"
OFFLINE: Final = b"0"


def group_hash(group_id: str) -> str:
    """Return the 16 hex digits that stand for a group on a broker."""
    return hashlib.sha256(group_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Topics:
    """The topics of one group, as seen by one device."""

    group_id: str
    device_id: str

    @functools.cached_property
    def prefix(self) -> str:
        """``sb/<g>``: every topic of the group starts with it (hashed once, not per message)."""
        return f"{ROOT}/{group_hash(self.group_id)}"

    def of(self, kind: Kind, device: str) -> str:
        """The topic of ``kind`` for ``device``."""
        return f"{self.prefix}/{kind}/{device}"

    @property
    def subscriptions(self) -> list[str]:
        """What this device subscribes to."""
        return [
            f"{self.prefix}/ev/+",
            f"{self.prefix}/have/+",
            f"{self.prefix}/presence/+",
            self.of("to", self.device_id),
            self.of("dm", self.device_id),
        ]

    def parse(self, topic: str) -> tuple[Kind, str] | None:
        """Return ``(kind, device)`` for one of the group's topics, else ``None``."""
        head, _, rest = topic.partition(self.prefix + "/")
        if head or not rest:
            return None
        kind, _, device = rest.partition("/")
        if kind not in KINDS or not device or "/" in device:
            return None
        return kind, device

    def client_id(self) -> str:
        """A stable MQTT client id (≤ 23 characters, the 3.1.1 minimum brokers must accept)."""
        digest = hashlib.sha256(f"{self.group_id}/{self.device_id}".encode()).hexdigest()
        return "sb" + digest[:21]
