"""``LinkState`` and ``LinkStatus``: where a group's link is, as ``switchboard status`` shows it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LinkState(enum.StrEnum):
    """Where a link is in its life.

    A ``StrEnum``: the value crosses the local API as text (``link status``'s ``state``).
    """

    DISCONNECTED = "disconnected"  # between connections, waiting for the next retry
    CONNECTING = "connecting"  # an attempt is under way
    CONNECTED = "connected"  # a session is established
    OFF = "off"  # stopped


@dataclass
class LinkStatus:
    """What ``switchboard status`` shows of a link."""

    state: LinkState = LinkState.DISCONNECTED
    last_push: str | None = None
    last_error: str | None = None
    connected_since: str | None = None
    relay: str = ""
    tampered: int = 0
    forged: int = 0  # of the tampered: opened with the group key, not signed by their origin
    protocol: str = ""  # a broker link's protocol ("MQTT 5", "MQTT 3.1.1", "JetStream")
