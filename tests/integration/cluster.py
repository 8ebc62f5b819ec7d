"""Real processes on loopback for L3 tests: a relay, device daemons, and a faulty TCP proxy.

Everything here waits on readiness: a process's own "listening"/"ready" line, a socket that
accepts, or a stream of events from the daemon. Timeouts scale with
``SWITCHBOARD_TEST_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from switchboard.config import load_settings
from switchboard.daemon.client import Client
from switchboard.errors import DaemonUnavailable

PY = sys.executable
FACTOR = float(os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float) -> float:
    """A test timeout, scaled for slow machines."""
    return seconds * FACTOR


T = TypeVar("T")

#: How often ``wait_until`` looks again: it waits for a condition, never for a fixed time.
POLL = 0.1


def wait_until(check: Callable[[], T | None], seconds: float, what: str) -> T:
    """Return ``check()``'s first truthy result, looking every ``POLL`` s up to ``seconds``
    (scaled); fail naming ``what``."""
    deadline = time.monotonic() + timeout(seconds)
    idle = threading.Event()
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        idle.wait(POLL)


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1 (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


class _Lines:
    """Drain a process's output in a thread; let tests wait for a line matching a pattern."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # EOF marker
            self._cond.notify_all()

    def wait_for(self, pattern: str, seconds: float, start: int = 0) -> re.Match[str]:
        regex = re.compile(pattern)
        with self._cond:
            index = start

            def found() -> re.Match[str] | None:
                nonlocal index
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    if self.lines[index] == "":
                        raise AssertionError(f"process ended before {pattern!r}: {self.lines}")
                    index += 1
                return None

            if not self._cond.wait_for(lambda: found() is not None, timeout(seconds)):
                raise AssertionError(f"no line matching {pattern!r} within {seconds} s")
            match = found()
            assert match is not None
            return match


class Relay:
    """``switchboard relay serve`` in its own process, restartable on the same port and data."""

    def __init__(self, data: Path, port: int | None = None) -> None:
        self.data = data
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        cmd = [
            PY,
            "-m",
            "switchboard",
            "relay",
            "serve",
            "--port",
            str(self.port),
            "--data",
            str(self.data),
        ]
        env = {**os.environ, "SWITCHBOARD_HOME": str(self.data)}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._log = _Lines(self.proc.stdout)
        self._log.wait_for(r"relay listening on", 20)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout(20))
        self.proc = None


class Device:
    """One device: a home directory and its daemon process (``daemon run``)."""

    def __init__(self, home: Path, name: str) -> None:
        self.home = home
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.env = {**os.environ, "SWITCHBOARD_HOME": str(home)}
        self.settings = load_settings(self.env)

    def start(self) -> Device:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [PY, "-m", "switchboard", "daemon", "run"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._log = _Lines(self.proc.stderr)
        self._log.wait_for(r" ready on ", 20)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout(20))
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    # -- talking to it -----------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> Any:
        try:
            client = Client.open(self.settings.socket_path)
        except DaemonUnavailable as exc:
            raise AssertionError(f"{self.name}'s daemon is gone: {self.last_words()}") from exc
        with client:
            return client.call(method, params, timeout=timeout(60))

    def last_words(self) -> str:
        """How the daemon process ended, and the last lines it wrote (for a failed test)."""
        if self.proc is None:
            return "never started, or stopped by the test"
        tail = "".join(self._log.lines[-15:])
        return f"exit status {self.proc.poll()}; its last lines:\n{tail}"

    def cli(
        self, *args: str, check: bool = True, agent: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if agent:
            env["SWITCHBOARD_AGENT"] = agent
        result = subprocess.run(
            [PY, "-m", "switchboard", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout(60),
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"switchboard {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_json(self, *args: str, agent: str | None = None) -> Any:
        return json.loads(self.cli(*args, "--json", agent=agent).stdout)

    @property
    def log_text(self) -> str:
        """Everything the daemon has written to its log (stderr) so far."""
        return "".join(self._log.lines)

    @property
    def short(self) -> str:
        return str(self.call("status")["device"]["short"])

    def wait_events(self, count: int, seconds: float = 30, **filters: Any) -> list[dict[str, Any]]:
        """Follow the log from the start until ``count`` events match ``filters`` (the whole
        log, all rooms included, unless a ``reader`` is given)."""
        seen: list[dict[str, Any]] = []
        values = {"after": 0, "all_rooms": "reader" not in filters, **filters}
        with Client.open(self.settings.socket_path) as client:
            for item in client.stream("events.follow", values, duration=timeout(seconds)):
                seen.append(item)
                if len(seen) >= count:
                    return seen
        raise AssertionError(f"{self.name}: {len(seen)} of {count} events within {seconds} s")


@contextlib.contextmanager
def group_of(
    tmp: Path, *names: str, relay: Relay | None = None
) -> Iterator[tuple[Relay, list[Device]]]:
    """A running relay and devices that all joined one group; everything stopped afterwards."""
    relay = relay or Relay(tmp / "relay")
    devices = [Device(tmp / name, name) for name in names]
    try:
        relay.start()
        for device in devices:
            device.start()
            device.call("init", name=device.name)
        created = devices[0].call("group.create", name="test", relay=relay.url)
        for device in devices[1:]:
            device.call("join", invite=created["invite"])
        yield relay, devices
    finally:
        for device in devices:
            device.kill(signal.SIGTERM)
        relay.kill(signal.SIGTERM)


class Proxy:
    """A loopback TCP proxy that can stall, cut and record traffic (faults at the socket level)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.captured = bytearray()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stall(self) -> None:
        """Stop forwarding bytes (connections stay open)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again."""
        self._flowing.set()

    def cut(self) -> None:
        """Reset every open connection."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                # A thread blocked in recv holds the socket open past close(): wake it first,
                # so the reset goes out now, not when the next byte arrives.
                conn.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                with self._lock:
                    self.captured += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
