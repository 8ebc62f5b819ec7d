"""Helpers for coordination tests: a relay and devices (real processes), with settings per
device and an optional faulty proxy per device, plus waits on conditions and events."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from cluster import Device, Proxy, Relay, timeout, wait_until

from switchboard.daemon.client import Client

T = TypeVar("T")


def device_id(device: Device) -> str:
    """The full device id of ``device``."""
    return str(device.call("status")["device"]["id"])


def notices(holder: Device, name: str, home: Device, kind: str | None = None) -> list[Any]:
    """The ``notice_posted`` events to agent ``name`` of device ``home`` held by ``holder``."""
    where = "type = 'notice_posted'"
    if kind:
        where += f" AND json_extract(data, '$.kind') = '{kind}'"
    internal = f"{name}:{device_id(home)}"
    held = holder.call("events", where=where, all_rooms=True)
    return [r for r in held if internal in r["data"]["recipients"]]


def wait_notice(
    holder: Device, name: str, home: Device, kind: str, text: str, seconds: float = 30
) -> dict[str, Any]:
    """Wait until ``holder`` holds a notice of ``kind`` to ``name`` (of ``home``) containing
    ``text``; return it."""

    def found() -> Any:
        return next(
            (n for n in notices(holder, name, home, kind) if text in n["data"]["text"]), None
        )

    result: dict[str, Any] = wait_until(found, seconds, f"{kind} notice {text!r} for {name}")
    return result


def wait_room_event(device: Device, kind: str, room: str, count: int = 1) -> None:
    """Wait until ``device`` holds ``count`` events of ``kind`` about ``room``."""
    device.wait_events(count, type=kind, where=f"json_extract(data, '$.room') = '{room}'")


def wait_agent(device: Device, address: str) -> None:
    """Wait until ``device`` knows the agent ``address``."""
    device.wait_events(1, type="agent_registered", agent=address)


class Sleeper:
    """A child process that stands in for an agent's process (killed by the test)."""

    def __init__(self) -> None:
        code = "import sys; sys.stdin.read()"  # lives until killed or its stdin closes
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        self.pid = self.proc.pid

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout(10))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@contextlib.contextmanager
def cluster(
    tmp: Path,
    *names: str,
    env: dict[str, dict[str, str]] | None = None,
    via_proxy: tuple[str, ...] = (),
) -> Iterator[tuple[list[Device], dict[str, Proxy]]]:
    """A relay and devices that all joined one group; ``env`` sets variables per device name,
    and devices named in ``via_proxy`` reach the relay through a ``Proxy``."""
    relay = Relay(tmp / "relay")
    devices = [Device(tmp / name, name) for name in names]
    proxies: dict[str, Proxy] = {}
    try:
        relay.start()
        for device in devices:
            device.env.update((env or {}).get(device.name, {}))
            device.start()
            device.call("init", name=device.name)
            if device.name in via_proxy:
                proxies[device.name] = Proxy(relay.port)
        first = devices[0]
        url = proxies[first.name].url if first.name in proxies else relay.url
        invite = first.call("group.create", name="test", relay=url)["invite"]
        for device in devices[1:]:
            params: dict[str, Any] = {"invite": invite}
            device.call("join", **params)
            if device.name in proxies:
                _relink(device, proxies[device.name].url)
        yield devices, proxies
    finally:
        for device in devices:
            device.kill(signal.SIGTERM)
        for proxy in proxies.values():
            proxy.close()
        relay.kill(signal.SIGTERM)


def _relink(device: Device, url: str) -> None:
    """Point a device's link at ``url`` (a proxy) by rewriting its group row and restarting."""
    import sqlite3  # noqa: PLC0415

    device.stop()
    with contextlib.closing(sqlite3.connect(device.settings.db_path)) as conn, conn:
        conn.execute("UPDATE groups SET relay_url = ?", (url,))
    device.start()
    with Client.open(device.settings.socket_path) as client:
        client.call("link.sync", {"timeout": timeout(20)}, timeout=timeout(40))
