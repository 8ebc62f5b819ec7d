"""``Daemon``: one per home; owns the store, the links, presence and the local API.

Theory of operation
-------------------
Everything enters through the event log. A local call (``send``) appends events; a link
receives events from the group. Either way the log calls ``_on_stored`` once per commit with
what was stored: it wakes followers (``events --follow``, ``inbox --wait``) and each link's
sender (replication), then runs the features' after-commit reactions. Received events also get
the features' in-transaction reactions (a ``message_delivered`` receipt for a message to one of
our agents). What the features are, and what they react to, is ``daemon/features.py``'s table:
this module names none of them. ``Daemon`` is the ``Context`` (daemon/context.py) they get.

Presence is ephemeral: the relay tells a link which devices are connected; we keep that in the
``devices`` table (not in the log) and derive each remote agent's shown status from it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from switchboard import __version__, keyring, runloop
from switchboard.config import Settings, ensure_home
from switchboard.crypto import create_identity, public_bytes
from switchboard.daemon import direct
from switchboard.daemon.features import REGISTRY
from switchboard.events import Body, Event, now_ts
from switchboard.ids import device_id_from_public_key
from switchboard.links.base import Link, make_link
from switchboard.proto.session import Established
from switchboard.store import keys as store_keys
from switchboard.store import projections
from switchboard.store.db import Database
from switchboard.store.log import EventLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from switchboard.daemon.api import ApiServer
    from switchboard.daemon.context import Context

T = TypeVar("T")

log = logging.getLogger("switchboard.daemon")

# Longest wait for one part (the API, a link) to close before shutdown moves on.
CLOSE_STEP_TIMEOUT = 5.0
# After a stop signal the process ends within this long, whatever is stuck.
SHUTDOWN_GRACE = 20.0


class Daemon:
    """The device daemon. ``serve()`` runs it until ``shutdown()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ensure_home(settings.home)
        self.identity = create_identity(settings.identity_path)
        self.public_key = public_bytes(self.identity)
        self.device_id = device_id_from_public_key(self.public_key)
        self.db = Database(settings.db_path)
        self.log = EventLog(self.db, self.device_id)
        self.peers: dict[str, Link] = {}
        self.started = time.time()
        self._stop = asyncio.Event()
        self._advanced = asyncio.Event()
        # Counts log and presence changes; callers of wait_advanced read it before they look.
        self.changes = 0
        self._api: ApiServer | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._remove_flush_listener: Callable[[], None] | None = None
        self._parts: dict[Callable[..., Any], Any] = {}
        self.registry = REGISTRY
        # What this device serves on every link's directed channel (the features' requests).
        self.handlers = direct.handlers_of(self.registry, self)

    # -- lifecycle -------------------------------------------------------------------------------

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Run until ``shutdown()``; call ``ready`` once the API accepts connections."""
        from switchboard.daemon.api import ApiServer  # noqa: PLC0415 - keeps import order simple

        await self.db.write(self._ensure_self)
        self._remove_listener = self.log.add_listener(self._on_stored)
        # Receipts of a receive are served once synced (store/log.py): wake the links then.
        self._remove_flush_listener = self.log.add_flush_listener(self._on_flushed)
        self.log.react_with(self._react)
        self.registry.start(self)
        for group in await self.read(projections.list_groups):
            if group["enabled"]:
                self.start_link(group)
        self._api = ApiServer(self.registry.bind(self), self.settings.socket_path)
        await self._api.start()
        log.info("daemon %s ready on %s", self.short, self.settings.socket_path)
        if ready is not None:
            ready()
        try:
            await self._stop.wait()
        finally:
            await self._close()

    def shutdown(self) -> None:
        """Ask ``serve()`` to stop."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether ``shutdown()`` was asked for."""
        return self._stop.is_set()

    async def _close(self) -> None:
        # Each step is bounded: a stuck peer or client must not keep the daemon alive. Nothing
        # is at risk in cutting a step short: every event is durable before it was reported.
        steps: list[tuple[str, Awaitable[None]]] = []
        if self._api is not None:
            steps.append(("local API", self._api.aclose()))
        steps += self.registry.stops(self)
        steps += [(f"link {group[:8]}", peer.stop()) for group, peer in self.peers.items()]
        for name, step in steps:
            try:
                await asyncio.wait_for(step, CLOSE_STEP_TIMEOUT)
            except TimeoutError:
                log.warning("! closing %s took over %g s; left behind", name, CLOSE_STEP_TIMEOUT)
        if self._remove_listener is not None:
            self._remove_listener()
        if self._remove_flush_listener is not None:
            self._remove_flush_listener()
        self.db.close()
        log.info("daemon stopped")

    def _ensure_self(self, conn: Any) -> None:
        name = projections.get_meta(conn, "device_name") or socket.gethostname().split(".")[0]
        projections.set_meta(conn, "device_name", name)
        projections.ensure_device(conn, self.device_id, name, self.public_key.hex(), now_ts())
        # Presence is ephemeral: what was online when we last ran says nothing now.
        for row in projections.list_devices(conn):
            if row["online"] and row["device_id"] != self.device_id:
                projections.set_presence(
                    conn, row["device_id"], False, row["last_seen"] or now_ts()
                )

    # -- reads -----------------------------------------------------------------------------------

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(reader_connection, *args)``: a projection read, on the loop's own reader.

        These reads are indexed lookups of microseconds on a WAL reader, which never waits for
        the writer; a hop to a worker thread costs more than the read itself and several of
        them sat on every send. User SQL (``query.run_query``), which can run long, still
        goes to a thread.
        """
        return fn(self.db.reader(), *args)

    async def read_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Like ``read``, in a worker thread: for reads that can take long (full-text search)."""

        def call() -> Any:
            return fn(self.db.reader(), *args)

        return await asyncio.to_thread(call)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(writer connection)`` in one transaction of the single writer."""
        return await self.db.write(fn)

    def part(self, make: Callable[[Context], T]) -> T:
        """The one ``make(self)`` of this daemon, made on first use (a feature's state)."""
        try:
            found: T = self._parts[make]
        except KeyError:
            found = self._parts[make] = make(self)
        return found

    @property
    def short(self) -> str:
        """This device's short id, as the group sees it."""
        conn = self.db.reader()
        row = conn.execute(
            "SELECT short FROM devices WHERE device_id = ?", (self.device_id,)
        ).fetchone()
        return str(row[0]) if row else self.device_id[:4].upper()

    # -- links -----------------------------------------------------------------------------------

    @property
    def links(self) -> Mapping[str, Link]:
        """The running link of each group, by group id."""
        return self.peers

    def start_link(self, group: dict[str, Any], *, create: bool = False) -> Link:
        """Start the link of a group row; the URL's scheme picks its kind (links/base.py)."""
        rows, root = store_keys.key_rows(self.db.reader(), group["group_id"])
        ring = keyring.load(group["group_id"], group["secret"], rows, root)
        for device, seq in store_keys.cutoffs(self.db.reader()).items():
            ring.hold_up_to(device, seq)  # raised by forgotten_held
        peer = make_link(
            {**group, "keyring": ring},
            log=self.log,
            device_id=self.device_id,
            identity=self.identity,
            create=create,
            on_presence=self._on_presence,
            on_established=self._pinner(group["group_id"]),
            handlers=self.handlers,
        )
        self.peers[group["group_id"]] = peer
        peer.start()
        return peer

    def _pinner(self, group_id: str) -> Callable[[Established], Any]:
        async def pin(event: Established) -> None:
            online = set(event.online)

            def write(conn: Any) -> None:
                group = projections.get_group(conn, group_id)
                if group is not None and group["relay_key"] is None:
                    projections.set_group_relay_key(conn, group_id, event.peer_key)
                ts = now_ts()
                known = {row["device_id"] for row in projections.list_devices(conn)}
                for device in (known | online) - {self.device_id}:
                    projections.set_presence(conn, device, device in online, ts)

            await self.db.write(write)

        return pin

    async def _on_presence(self, device: str, online: bool) -> None:
        def write(conn: Any) -> None:
            if device:
                projections.set_presence(conn, device, online, now_ts())
                return
            # Link down: nobody is known to be online any more; last_seen stays as it was.
            for row in projections.list_devices(conn):
                if row["device_id"] != self.device_id and row["online"]:
                    projections.set_presence(conn, row["device_id"], False, now_ts())

        await self.db.write(write)
        self._wake_followers()

    async def stop_link(self, group_id: str) -> None:
        """Stop a group's link."""
        peer = self.peers.pop(group_id, None)
        if peer is not None:
            await peer.stop()

    async def call_device(self, device: str, kind: str, payload: bytes, *, timeout: float) -> bytes:
        """Send a ``kind`` request to one device of the group and return its answer."""
        return await direct.call_device(self.peers, device, kind, payload, timeout=timeout)

    def stream_device(
        self, device: str, kind: str, payload: bytes, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Send a ``kind`` request to one device and iterate the chunks of its answer."""
        return direct.stream_device(self.peers, device, kind, payload, timeout=timeout)

    def device_link(self, device: str) -> Link | None:
        """The link a call of ``device`` goes through now."""
        return direct.link_to(self.peers, device)

    # -- the one fan-out point -------------------------------------------------------------------

    def _on_stored(self, stored: list[tuple[int, Event]]) -> None:
        self._wake_followers()  # first: a reader waits on the loop for exactly this
        for peer in self.peers.values():
            peer.notify()
        self.registry.react_after_commit(self, stored)

    def _on_flushed(self) -> None:
        for peer in self.peers.values():
            peer.notify()

    def _react(
        self, conn: sqlite3.Connection, stored: list[tuple[int, Event]]
    ) -> list[tuple[str, Body]]:
        # Received events, in the writer's transaction that stores them (registry.IN_TXN).
        return self.registry.react_in_txn(self, conn, stored)

    def wake(self) -> None:
        """Tell every ``wait_advanced`` that something changed."""
        self._wake_followers()

    def _wake_followers(self) -> None:
        self.changes += 1
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def wait_advanced(self, timeout: float, since: int | None = None) -> bool:
        """Wait until the log or presence changes; return ``False`` on timeout.

        Args:
            timeout: seconds.
            since: ``changes`` as the caller read it *before* looking at the state it waits
                on; a change after that returns at once, so no change can slip between the
                look and the wait.
        """
        if since is not None and self.changes != since:
            return True
        event = self._advanced
        try:
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
                await event.wait()
        except TimeoutError:
            return False
        return True

    def status_of_daemon(self) -> dict[str, Any]:
        """The ``daemon`` part of ``status``."""
        return {"running": True, "pid": os.getpid(), "version": __version__}


def run(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT (``switchboard daemon run``)."""
    from switchboard.daemon.process import hold_pid_lock  # noqa: PLC0415
    from switchboard.logs import setup_logging  # noqa: PLC0415

    setup_logging(settings.log_level)
    with hold_pid_lock(settings):
        runloop.run(_main(settings))


async def _main(settings: Settings) -> None:
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if daemon.stopping:
            log.warning("! second signal: exiting now")
            os._exit(1)
        daemon.shutdown()
        # A watchdog outside the event loop: if anything (a worker thread, a peer) keeps the
        # process from ending, it ends anyway. The log is durable, so this is as safe as a crash.
        watchdog = threading.Timer(SHUTDOWN_GRACE, _force_exit)
        watchdog.daemon = True
        watchdog.start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    await daemon.serve()


def _force_exit() -> None:
    log.warning("! shutdown took over %g s: exiting", SHUTDOWN_GRACE)
    logging.shutdown()
    os._exit(1)
