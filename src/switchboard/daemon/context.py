"""``Context``: all a daemon feature module may use of the daemon that runs it.

A feature module (``daemon/rooms.py``, ``daemon/leases.py``, ...) is written against this
protocol and never imports ``daemon.service``: it gets the device, the settings, the log, reads
and writes, the change waits, the links, its own per-daemon state (``part``) and, for requests
between two devices, the directed channel. ``service.Daemon`` is the one implementation; a test
may pass its own. ``docs/internals.md`` ("Daemon features") tells how a feature plugs in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import sqlite3

    from switchboard.config import Settings
    from switchboard.links.base import Link
    from switchboard.store.db import Database
    from switchboard.store.log import EventLog

T = TypeVar("T")

#: Answers one directed request from another device of the group: ``(ctx, device id, payload)``
#: in, the answer's payload out (the channel seals both; at most ``proto.calls.MAX_BODY``).
#: Raise ``SwitchboardError`` to refuse: the caller gets ``RemoteError`` with its code.
RequestHandler = Callable[["Context", str, bytes], Awaitable[bytes]]
#: Answers a streamed request: an async generator of chunks, pulled only while the caller's
#: window has room (each at most ``proto.calls.MAX_BODY``).
StreamHandler = Callable[["Context", str, bytes], AsyncIterator[bytes]]


class Context(Protocol):
    """The daemon as a feature sees it."""

    settings: Settings
    """This home's settings (``offline_timeout``, ``edit_window``, paths, ...)."""
    device_id: str
    """This device's id (26 lower-case base32 characters)."""
    public_key: bytes
    """This device's Ed25519 public key."""
    log: EventLog
    """The event log: ``append``/``append_many`` for this device's new events."""
    db: Database
    """The database; write through ``write``, read through ``read``."""
    started: float
    """When the daemon started (epoch seconds)."""

    @property
    def short(self) -> str:
        """This device's short id, as the group sees it (``BOXE``)."""
        ...

    @property
    def changes(self) -> int:
        """Counts log and presence changes; read it before a look, then ``wait_advanced``."""
        ...

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(reader connection, *args)``: a short projection read, on the loop."""
        ...

    async def read_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Like ``read``, in a worker thread, for reads that can take long."""
        ...

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(writer connection)`` in one transaction of the single writer (not for events:
        those go through ``log``)."""
        ...

    async def wait_advanced(self, timeout: float, since: int | None = None) -> bool:
        """Wait until the log or presence changes after ``since``; ``False`` on timeout."""
        ...

    def wake(self) -> None:
        """Tell every ``wait_advanced`` that something changed (a table outside the log)."""
        ...

    # -- links -----------------------------------------------------------------------------

    @property
    def links(self) -> Mapping[str, Link]:
        """The running link of each group, by group id."""
        ...

    def start_link(self, group: dict[str, Any], *, create: bool = False) -> Link:
        """Start the link of a group row (``projections.get_group``); return it."""
        ...

    async def stop_link(self, group_id: str) -> None:
        """Stop a group's link (no-op if none runs)."""
        ...

    # -- per-daemon state and lifecycle ----------------------------------------------------

    def part(self, make: Callable[[Context], T]) -> T:
        """The daemon's one ``make(self)``, made on first use: a feature's state (locks, caches,
        a background loop), shared by its methods and reactions."""
        ...

    def shutdown(self) -> None:
        """Ask the daemon to stop."""
        ...

    def status_of_daemon(self) -> dict[str, Any]:
        """The ``daemon`` part of ``status``: running, pid, version."""
        ...

    # -- the directed channel (request/response with one device of the group) ---------------

    async def call_device(self, device: str, kind: str, payload: bytes, *, timeout: float) -> bytes:
        """Send a ``kind`` request to one device of the group and return its answer.

        A feature answers requests by declaring ``Feature.requests`` (``daemon/registry.py``).

        Raises:
            Unreachable: the device is not connected to any of this device's links.
            RemoteError: the device answered with an error (its code in ``remote_code``).
            TransportTimeout: no answer within ``timeout`` seconds.
        """
        ...

    def stream_device(
        self, device: str, kind: str, payload: bytes, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Send a ``kind`` request to one device and iterate the chunks of its answer.

        Close the iterator (``aclose``) when done early. A feature answers by declaring
        ``Feature.request_streams``. Iterating raises what ``call_device`` raises.
        """
        ...

    def device_link(self, device: str) -> Link | None:
        """The link a call of ``device`` goes through now (``None``: none reaches it)."""
        ...
