"""Settings: the home directory, its files, and the ``SWITCHBOARD_*`` environment variables.

Nothing is read at import time; ``load_settings()`` reads the environment and the optional
``config.toml`` in the home when it is called.

Environment variables:

- ``SWITCHBOARD_HOME``: the data directory (default: the platform's user data dir).
- ``SWITCHBOARD_AGENT``: the acting agent's name (default: the login name).
- ``SWITCHBOARD_OFFLINE_TIMEOUT``: seconds after which agents of a silent device are shown
  offline (default 300).
- ``SWITCHBOARD_LOG_LEVEL``: ``DEBUG``, ``INFO`` (default), ``WARNING``.
- ``SWITCHBOARD_EXPIRE_AFTER``: seconds an offline remote agent stays listed (default 300).
- ``SWITCHBOARD_EDIT_WINDOW``: seconds within which two agents' edits of one file conflict
  (default 30).

``config.toml`` keys (all optional): ``offline_timeout``, ``expire_after``, ``edit_window``,
``log_level``, ``[relay]`` with
``max_age`` (seconds) and ``max_bytes`` (per group).
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

APP_NAME: Final = "switchboard"
# Agents of a device we have not heard from for this long are shown offline: long enough to
# ride out a laptop lid or a relay restart, short enough that a list of agents is not a list of
# ghosts.
DEFAULT_OFFLINE_TIMEOUT: Final = 300.0
# A relay keeps envelopes for offline devices this long and up to this size per group.
DEFAULT_RELAY_MAX_AGE: Final = 30 * 24 * 3600.0
DEFAULT_RELAY_MAX_BYTES: Final = 1024 * 1024 * 1024
DEFAULT_RELAY_PORT: Final = 7787
# A remote agent offline for this long leaves listings (its history stays): long enough to see
# who just left, short enough that listings show who is around.
DEFAULT_EXPIRE_AFTER: Final = 300.0
# Two agents editing one file within this many seconds are told of each other: about one
# agent turn, so edits in the same stretch of work match and yesterday's do not.
DEFAULT_EDIT_WINDOW: Final = 30.0


def default_home() -> Path:
    """Return the platform's user data dir for Switchboard."""
    import platformdirs  # noqa: PLC0415 - lazy: only when no SWITCHBOARD_HOME is set

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_agent_name() -> str:
    """Return the login name, reduced to a valid agent name."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "user"
    name = re.sub(r"[^a-z0-9_.\-]", "-", login.lower()).strip("-._")[:32]
    return name or "user"


@dataclass(frozen=True)
class Settings:
    """Where things live and how long things take, for one home."""

    home: Path
    agent: str | None
    offline_timeout: float = DEFAULT_OFFLINE_TIMEOUT
    log_level: str = "INFO"
    relay_max_age: float = DEFAULT_RELAY_MAX_AGE
    relay_max_bytes: int = DEFAULT_RELAY_MAX_BYTES
    expire_after: float = DEFAULT_EXPIRE_AFTER
    edit_window: float = DEFAULT_EDIT_WINDOW

    @property
    def db_path(self) -> Path:
        """The device's SQLite database."""
        return self.home / "switchboard.db"

    @property
    def identity_path(self) -> Path:
        """The device's Ed25519 private key (mode 0600)."""
        return self.home / "identity.key"

    @property
    def socket_path(self) -> Path:
        """The daemon's local API socket (mode 0600)."""
        return self.home / "daemon.sock"

    @property
    def pid_path(self) -> Path:
        """The running daemon's pid file, locked while it runs."""
        return self.home / "daemon.pid"

    @property
    def log_path(self) -> Path:
        """The background daemon's log file."""
        return self.home / "daemon.log"

    @property
    def relay_dir(self) -> Path:
        """The default data directory of ``relay serve``."""
        return self.home / "relay"

    def acting_agent(self) -> str:
        """Return the acting agent's name: ``--as``/``SWITCHBOARD_AGENT``, else the login name."""
        return self.agent or default_agent_name()


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import tomllib  # noqa: PLC0415 - lazy: most commands never need it

    with path.open("rb") as file:
        return tomllib.load(file)


def load_settings(
    env: dict[str, str] | None = None, *, home: str | Path | None = None, agent: str | None = None
) -> Settings:
    """Read settings from arguments, then the environment, then ``<home>/config.toml``."""
    env = dict(os.environ) if env is None else env
    home_path = Path(home or env.get("SWITCHBOARD_HOME") or default_home()).expanduser()
    file = _read_toml(home_path / "config.toml")
    relay = file.get("relay", {})
    timeout = env.get("SWITCHBOARD_OFFLINE_TIMEOUT") or file.get("offline_timeout")
    return Settings(
        home=home_path,
        agent=agent or env.get("SWITCHBOARD_AGENT") or None,
        offline_timeout=float(timeout) if timeout else DEFAULT_OFFLINE_TIMEOUT,
        log_level=str(env.get("SWITCHBOARD_LOG_LEVEL") or file.get("log_level") or "INFO").upper(),
        relay_max_age=float(relay.get("max_age", DEFAULT_RELAY_MAX_AGE)),
        relay_max_bytes=int(relay.get("max_bytes", DEFAULT_RELAY_MAX_BYTES)),
        expire_after=float(
            env.get("SWITCHBOARD_EXPIRE_AFTER") or file.get("expire_after") or DEFAULT_EXPIRE_AFTER
        ),
        edit_window=float(
            env.get("SWITCHBOARD_EDIT_WINDOW") or file.get("edit_window") or DEFAULT_EDIT_WINDOW
        ),
    )


def ensure_home(home: Path) -> None:
    """Create the home directory, private to the user."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
