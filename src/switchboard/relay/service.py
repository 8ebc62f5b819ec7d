"""``run_relay``: the relay as a standalone process (``switchboard relay serve``).

It loads the home's retention settings, keeps the relay's identity under its data directory,
prints the URL it listens on (the real port when asked for 0), optionally announces itself on
the LAN, and stops cleanly on SIGTERM. The relay itself is ``relay.server.Relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from pathlib import Path
from typing import Any

from switchboard.config import load_settings
from switchboard.crypto import create_identity, fingerprint, public_bytes
from switchboard.ids import short_id
from switchboard.relay.server import Relay


async def run_relay(
    settings_home: Path,
    host: str,
    port: int,
    data_dir: Path | None,
    *,
    as_json: bool = False,
    announce: bool = False,
    name: str | None = None,
) -> None:
    """Run a standalone relay until cancelled or SIGTERM.

    Prints one line, ``relay listening on ws://HOST:PORT (id XXXX)``, to stdout once it
    accepts connections (with the real port when ``port`` is 0); with ``as_json``, that line
    is one JSON object, ``{"url": "ws://HOST:PORT", "id": "XXXX"}``.

    Args:
        settings_home: the Switchboard home, for ``config.toml`` retention settings and the
            default data directory (``<home>/relay``).
        host: address to bind.
        port: port to bind (0 picks a free one).
        data_dir: where the relay keeps its identity (``relay.key``) and ``relay.db``
            (``None``: ``<home>/relay``).
        announce: announce the relay on the LAN (mDNS: ``name``, short id, key fingerprint;
            ``transports.mdns``) once it listens.
        name: the name announced (default: the host name).

    Raises:
        TransportError: the address could not be bound.
    """
    settings = load_settings(home=settings_home)
    data = data_dir if data_dir is not None else settings.relay_dir
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = create_identity(data / "relay.key")
    relay = Relay(
        data,
        identity=identity,
        max_age=settings.relay_max_age,
        max_bytes=settings.relay_max_bytes,
    )
    shown, relay_short = (f"[{host}]" if ":" in host else host), short_id(relay.relay_id)

    bound_port: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def listening(bound: int) -> None:
        url = f"ws://{shown}:{bound}"
        if as_json:
            print(json.dumps({"url": url, "id": relay_short}), flush=True)
        else:
            print(f"relay listening on {url} (id {relay_short})", flush=True)
        bound_port.set_result(bound)

    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(
        relay.serve(host, port, ready=listening), name="switchboard[relay].serve"
    )
    announcement = None
    if announce:
        from switchboard.transports import mdns  # noqa: PLC0415 - zeroconf only when announcing

        waits: list[asyncio.Future[Any]] = [serving, bound_port]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if bound_port.done():
            announcement = await mdns.announce(
                "relay", name or socket.gethostname(), relay_short,
                fingerprint(public_bytes(identity)), port=bound_port.result(), host=host,
            )  # fmt: skip
            print(f"announced on the LAN as {name or socket.gethostname()}", flush=True)
    # SIGTERM cancels the relay, which says goodbye and closes its store; run_relay then
    # returns normally. Where handlers cannot be installed (Windows, not the main thread), we
    # serve until cancelled.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, serving.cancel)
    try:
        await asyncio.wait({serving})
    finally:
        if announcement is not None:
            await announcement.aclose()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
        serving.cancel()
        await asyncio.wait({serving})
    if not serving.cancelled():
        serving.result()  # raises what stopped it (a port in use, a damaged store)
