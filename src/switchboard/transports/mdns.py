"""LAN discovery over mDNS/DNS-SD (the ``zeroconf`` package): announce a relay or a device, and
browse for them (``switchboard discover``, ``relay serve --announce``, ``docs/pairing.md``).

One service type, ``_switchboard._tcp.local.``; the TXT record says what is announced:
``v`` (1), ``kind`` (``relay`` or ``device``), ``name``, ``id`` (short id) and ``fp`` (the key
fingerprint people compare, ``crypto.fingerprint``). Announcements carry no secret and no group
id: anyone on the LAN may read them, and what they offer is a place to meet (a relay's address)
and a name to check, never a way in. zeroconf's exceptions stop here (``TransportError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Final

from switchboard.errors import TransportError

SERVICE: Final = "_switchboard._tcp.local."
DEFAULT_BROWSE_SECONDS: Final = 2.0
_RESOLVE_MS: Final = 1500


@dataclass(frozen=True)
class Found:
    """One announcement seen on the LAN."""

    kind: str
    name: str
    id: str
    fingerprint: str
    addresses: tuple[str, ...]
    port: int

    @property
    def url(self) -> str:
        """A relay's URL (``ws://ADDRESS:PORT``), or ``""`` for a device."""
        if self.kind != "relay" or not self.addresses:
            return ""
        return f"ws://{self.addresses[0]}:{self.port}"


def _addresses(host: str | None) -> list[str]:
    """The IPv4 addresses to announce for a listener bound to ``host``."""
    if host and host not in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding
        try:
            ipaddress.IPv4Address(host)
            return [host]
        except ValueError:
            return [socket.gethostbyname(host)]
    import ifaddr  # noqa: PLC0415 - only announcers of a wildcard listener need it

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):  # IPv4 (IPv6 addresses come as tuples)
                found.append(ip.ip)
    # Loopback last: a browser on this machine still finds it, the LAN gets the others first.
    return sorted(found, key=lambda a: a.startswith("127."))


class Announcement:
    """A service registered on the LAN until ``aclose``."""

    def __init__(self, zeroconf: Any, info: Any) -> None:
        self._zeroconf, self._info = zeroconf, info

    async def aclose(self) -> None:
        """Withdraw the announcement."""
        # Withdrawing is best effort (the network may be gone); closing is what matters.
        with contextlib.suppress(Exception):
            await self._zeroconf.async_unregister_service(self._info)
        await self._zeroconf.async_close()


async def announce(
    kind: str, name: str, ident: str, fingerprint: str, *, port: int = 0, host: str | None = None
) -> Announcement:
    """Announce a relay (its port and ``host``'s addresses) or a device on the LAN.

    Raises:
        TransportError: mDNS could not be started (no multicast interface, say).
    """
    from zeroconf import IPVersion  # noqa: PLC0415 - lazy: discovery is rare
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf  # noqa: PLC0415

    addresses = [socket.inet_aton(a) for a in _addresses(host)]
    label = f"{kind}-{ident}".replace(".", "-")  # one record per relay or device, renamed or not
    info = AsyncServiceInfo(
        SERVICE,
        f"{label}.{SERVICE}",
        addresses=addresses,
        port=port,
        properties={"v": "1", "kind": kind, "name": name, "id": ident, "fp": fingerprint},
        server=f"{kind}-{ident}.local.".lower(),
    )
    try:
        zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        await zeroconf.async_register_service(info, allow_name_change=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise TransportError(f"cannot announce on the LAN: {exc}") from exc
    return Announcement(zeroconf, info)


async def browse(seconds: float = DEFAULT_BROWSE_SECONDS, kind: str | None = None) -> list[Found]:
    """What is announced on the LAN, gathered for ``seconds``; optionally of one ``kind``.

    Raises:
        TransportError: mDNS could not be started.
    """
    from zeroconf import IPVersion, ServiceStateChange  # noqa: PLC0415 - lazy
    from zeroconf.asyncio import (  # noqa: PLC0415
        AsyncServiceBrowser,
        AsyncServiceInfo,
        AsyncZeroconf,
    )

    names: set[str] = set()

    def seen(**change: Any) -> None:
        if change["state_change"] is not ServiceStateChange.Removed:
            names.add(change["name"])

    try:
        zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
    except (OSError, RuntimeError, ValueError) as exc:
        raise TransportError(f"cannot browse the LAN: {exc}") from exc
    try:
        browser = AsyncServiceBrowser(zeroconf.zeroconf, [SERVICE], handlers=[seen])
        await asyncio.sleep(seconds)  # a browse window: answers arrive over its length
        await browser.async_cancel()
        found: dict[tuple[str, str], Found] = {}
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE, name)
            if not await info.async_request(zeroconf.zeroconf, _RESOLVE_MS):
                continue
            props = {
                k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()
            }
            if props.get("v") != "1" or (kind is not None and props.get("kind") != kind):
                continue
            item = Found(
                kind=props.get("kind", ""),
                name=props.get("name", ""),
                id=props.get("id", ""),
                fingerprint=props.get("fp", ""),
                addresses=tuple(info.parsed_addresses(IPVersion.V4Only)),
                port=info.port or 0,
            )
            found[(item.kind, item.id)] = item
    finally:
        await zeroconf.async_close()
    return sorted(found.values(), key=lambda f: (f.kind, f.name, f.id))
