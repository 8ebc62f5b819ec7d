"""``LinkStatus``: what ``switchboard status`` shows of a group's link."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LinkStatus:
    """What ``switchboard status`` shows of a link."""

    state: str = "disconnected"
    last_push: str | None = None
    last_error: str | None = None
    connected_since: str | None = None
    relay: str = ""
    tampered: int = 0
    protocol: str = ""  # a broker link's protocol ("MQTT 5", "MQTT 3.1.1", "JetStream")
