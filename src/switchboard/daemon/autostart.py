"""Autostart: connect to this home's daemon, starting it in the background when none runs.

This is the policy of the surfaces a person or a harness starts (the CLI, the MCP server): a
command works without ``switchboard daemon start`` first. The API client (daemon/client.py)
only connects; it never starts a process. Only light standard modules are imported until the
daemon turns out to be down (``switchboard send`` must start in well under 100 ms).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from switchboard.daemon.client import Client
from switchboard.errors import DaemonUnavailable

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    from typing import Final

    from switchboard.config import Settings

# How long ``connect()`` waits for a daemon it started to answer. A cold start opens SQLite and
# migrates; seconds are plenty, and a hung start must not hang the CLI.
DEFAULT_START_TIMEOUT: Final = 10.0


def connect(
    settings: Settings, *, autostart: bool = True, start_timeout: float = DEFAULT_START_TIMEOUT
) -> Client:
    """Connect to the daemon of ``settings.home``, starting it in the background if needed.

    Args:
        settings: which home's daemon.
        autostart: start the daemon when none answers, and wait ``start_timeout`` for it.
        start_timeout: seconds.

    Raises:
        DaemonUnavailable: no daemon answers (and ``autostart`` is off), or it did not start.
    """
    path = settings.socket_path
    try:
        return Client.open(path)
    except DaemonUnavailable as exc:
        if not isinstance(exc.__cause__, FileNotFoundError | ConnectionRefusedError):
            raise  # something is wrong with the socket itself: starting a daemon won't help
        if not autostart:
            raise DaemonUnavailable(
                f"no daemon is running for {settings.home} "
                "(start it with 'switchboard daemon start')"
            ) from None
    from switchboard.daemon import process  # noqa: PLC0415 - only when the daemon is down

    # A daemon that holds the home but does not listen yet is starting (a concurrent command
    # started it): wait for that one. A second one would exit on the lock, or, starting late,
    # take the home over from under a ``daemon stop``.
    pid = None if process.read_status(settings)["running"] else process.start_background(settings)
    deadline = time.monotonic() + start_timeout
    delay = 0.005
    while True:
        with contextlib.suppress(DaemonUnavailable):
            return Client.open(path)
        # A daemon that exits is fatal only if no other daemon (started by a concurrent command)
        # holds the home: that one will answer soon.
        if not process.read_status(settings)["running"]:
            if pid is None:
                pid = process.start_background(settings)  # the one starting gave up
            elif process.has_exited(pid):
                raise DaemonUnavailable(
                    f"the daemon exited during start-up; see {settings.log_path}"
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DaemonUnavailable(
                f"the daemon did not answer on {path} within {start_timeout:g} s; "
                f"see {settings.log_path}"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def connect_home(
    home: str | Path | None = None, *, agent: str | None = None, autostart: bool = True
) -> Client:
    """``switchboard.connect``: a ``Client`` of a home's daemon, started if none runs.

    Args:
        home: the data directory; default ``$SWITCHBOARD_HOME``, else the user data dir.
        agent: the acting agent; default ``$SWITCHBOARD_AGENT``, else the login name.
        autostart: start the daemon in the background when none answers.

    Raises:
        DaemonUnavailable: no daemon answers (and ``autostart`` is off), or it did not start.
    """
    from switchboard.config import load_settings  # noqa: PLC0415

    settings = load_settings(home=home, agent=agent)
    client = connect(settings, autostart=autostart)
    client.agent = settings.acting_agent()
    return client
