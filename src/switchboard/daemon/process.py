"""The daemon as an operating-system process: start it detached, find it, stop it.

One daemon runs per home. It proves that by holding an exclusive ``flock`` on
``<home>/daemon.pid`` (which also holds its pid) for as long as it runs, so a crashed daemon
never leaves a stale claim behind: the kernel drops the lock with the process. The file itself
is never removed, because removing a locked file lets a second daemon lock a new file of the
same name.

Others probe the lock with a shared, non-blocking ``flock``. A daemon starting during a probe
sees the file locked; ``hold_pid_lock`` tells that apart from a live daemon by the pid in the
file and retries for a moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

from switchboard.config import Settings, ensure_home
from switchboard.daemon.client import Client
from switchboard.errors import DaemonUnavailable, SwitchboardError

# How long ``hold_pid_lock`` keeps retrying a lock that is held by no live daemon (a probe, or
# a daemon between locking and writing its pid). Both last microseconds.
_LOCK_RETRY_SECONDS: Final = 0.5

# Children we started, so ``has_exited`` can reap them and read their exit status.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _daemon_command(settings: Settings) -> list[str]:
    # -P: don't put the working directory on sys.path, so nothing there can shadow our modules.
    home = str(settings.home)
    return [sys.executable, "-P", "-m", "switchboard", "--home", home, "daemon", "run"]


def start_background(settings: Settings) -> int:
    """Start ``switchboard daemon run`` for ``settings.home``, detached from this process.

    The daemon runs in a session of its own (a closed terminal does not stop it), reads from
    ``/dev/null`` and appends its output to ``settings.log_path``. This returns at once; use
    ``autostart.connect()`` to wait until it answers.

    Args:
        settings: the home to serve.

    Returns:
        The daemon's pid.
    """
    # Absolute: the daemon runs in its home, where a relative path would mean something else.
    settings = settings.replace(home=settings.home.absolute())
    ensure_home(settings.home)
    env = dict(os.environ, SWITCHBOARD_HOME=str(settings.home))
    log_fd = os.open(settings.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        child = subprocess.Popen(
            _daemon_command(settings),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
            cwd=settings.home,
            env=env,
        )
    finally:
        os.close(log_fd)
    _children[child.pid] = child
    return child.pid


def has_exited(pid: int) -> bool:
    """Return whether process ``pid`` is gone (reaping it if we started it)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is not None
    return not _is_alive(pid)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdecimal() else None


def _probe(settings: Settings) -> tuple[bool, int | None]:
    """Return ``(running, pid)`` by testing the pid file's lock."""
    try:
        fd = os.open(settings.pid_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


def read_status(settings: Settings) -> dict[str, Any]:
    """Report whether a daemon runs for ``settings.home``.

    Returns:
        ``{"running": bool, "pid": int | None, "socket": str}``; ``pid`` is ``None`` when no
        daemon runs.
    """
    running, pid = _probe(settings)
    return {"running": running, "pid": pid, "socket": str(settings.socket_path)}


@contextlib.contextmanager
def hold_pid_lock(settings: Settings) -> Iterator[int]:
    """Claim ``settings.home`` for this process while the block runs.

    Yields:
        This process's pid, now written to ``settings.pid_path``.

    Raises:
        SwitchboardError: another daemon runs for this home.
    """
    ensure_home(settings.home)
    fd = os.open(settings.pid_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _lock_exclusive(fd, settings)
        pid = os.getpid()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)
        try:
            yield pid
        finally:
            os.ftruncate(fd, 0)  # still locked: nobody reads a pid that is about to be wrong
    finally:
        os.close(fd)  # releases the lock


def _lock_exclusive(fd: int, settings: Settings) -> None:
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            if (pid is not None and _is_alive(pid)) or time.monotonic() >= deadline:
                shown = pid if pid is not None else "unknown"
                raise SwitchboardError(
                    f"a daemon is already running for {settings.home} (pid {shown})"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        else:
            return


def wait_stopped(settings: Settings, timeout: float, holder: int | None = None) -> bool:
    """Wait until no daemon holds ``settings.home``; return ``False`` on timeout.

    With ``holder``, also return ``False`` as soon as another pid holds the home: a daemon
    that started meanwhile took it over as ``holder`` let go.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        running, pid = _probe(settings)
        if not running:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (holder is not None and pid not in (None, holder)):
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def stop(settings: Settings, timeout: float = 10.0) -> bool:
    """Stop the daemon of ``settings.home``: ask it over the API, else send it SIGTERM.

    A daemon that takes the home over during the stop (one that a concurrent command started,
    waiting on the lock) is stopped the same way, within the same ``timeout``.

    Args:
        settings: which home's daemon.
        timeout: seconds to wait for it to stop (half for the polite request when it answers,
            the rest after SIGTERM).

    Returns:
        ``True`` if a daemon was running and has stopped, ``False`` if none was running.

    Raises:
        SwitchboardError: it was still running when the time was up.
    """
    running, pid = _probe(settings)
    if not running:
        return False
    deadline = time.monotonic() + timeout
    while True:
        if _stop_holder(settings, pid, deadline):
            return True
        running, successor = _probe(settings)
        if not running:
            return True
        if successor in (None, pid) or time.monotonic() >= deadline:
            raise DaemonUnavailable(
                f"the daemon for {settings.home} (pid {successor or pid}) "
                f"did not stop within {timeout:g} s"
            )
        pid = successor


def _stop_holder(settings: Settings, pid: int | None, deadline: float) -> bool:
    """Stop the daemon ``pid`` by ``deadline``; ``False`` if it did not, or another took over."""

    def left() -> float:
        return max(deadline - time.monotonic(), 0.0)

    try:
        with Client.open(settings.socket_path) as client:
            client.call("shutdown", {}, timeout=left() / 2)
    except SwitchboardError:
        pass  # not answering: fall through to the signal
    else:
        if wait_stopped(settings, left() / 2, holder=pid):
            return True
        if _probe(settings)[1] not in (None, pid):
            return False  # a successor holds the home: the caller stops that one
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    stopped = wait_stopped(settings, left(), holder=pid)
    if pid is not None:
        has_exited(pid)  # reap it if it was our child
    return stopped
