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
- ``SWITCHBOARD_FILES_MAX_SIZE``, ``SWITCHBOARD_FILES_QUOTA``, ``SWITCHBOARD_FILES_AUTO_FETCH``,
  ``SWITCHBOARD_FILES_MAX_RATE``, ``SWITCHBOARD_FILES_CHUNK_SIZE``: shared files' receiving
  policy in bytes, bytes per second served (0: no limit) and the chunk size files are cut
  into; also ``[files]`` ``max_size``/``quota``/``auto_fetch``/``max_rate``/``chunk_size`` in
  ``config.toml`` (docs/files.md).
- ``SWITCHBOARD_EDIT_WINDOW``: seconds within which two agents' edits of one file conflict
  (default 30).

``config.toml`` keys (all optional): ``offline_timeout``, ``expire_after``, ``edit_window``,
``log_level``, ``[relay]`` with
``max_age`` (seconds) and ``max_bytes`` (per group).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Every command loads settings: nothing here imports typing, re, dataclasses (which brings
# inspect and ast) or platformdirs on Linux. mypy treats any constant named TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
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
# Shared files: the largest file this device accepts (a build artifact, a screen recording; a
# bigger one is a job for a file server), everything its blob store may hold, and the size up
# to which a file shared with one of its agents is fetched at once (a log, a patch, a
# screenshot) rather than on demand.
DEFAULT_FILES_MAX_SIZE: Final = 100 * 1024 * 1024
DEFAULT_FILES_QUOTA: Final = 1024 * 1024 * 1024
DEFAULT_FILES_AUTO_FETCH: Final = 1024 * 1024
# The chunks files are cut into when shared (store/blobs.CHUNK_SIZE, the most a directed-channel
# message carries); smaller ones (down to 4 KiB) only to measure them (bench/files.py).
DEFAULT_FILES_CHUNK_SIZE: Final = 256 * 1024


def default_home() -> Path:
    """Return the platform's user data dir for Switchboard."""
    if sys.platform == "linux":  # platformdirs' answer, without importing it
        data = os.environ.get("XDG_DATA_HOME", "")  # used when absolute, as platformdirs does
        return Path(data if os.path.isabs(data) else os.path.expanduser("~/.local/share"), APP_NAME)
    import platformdirs  # noqa: PLC0415 - lazy: only when no SWITCHBOARD_HOME is set

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _login_name() -> str:
    """``getpass.getuser()``, without importing getpass (termios, warnings, contextlib)."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(variable)
        if user:
            return user
    import pwd  # noqa: PLC0415

    return pwd.getpwuid(os.getuid())[0]


def default_agent_name() -> str:
    """Return the login name, reduced to a valid agent name."""
    import re  # noqa: PLC0415 - only without an agent name

    try:
        login = _login_name()
    except (KeyError, OSError):
        login = "user"
    name = re.sub(r"[^a-z0-9_.\-]", "-", login.lower()).strip("-._")[:32]
    return name or "user"


_FIELDS = (
    "home",
    "agent",
    "offline_timeout",
    "log_level",
    "relay_max_age",
    "relay_max_bytes",
    "files_max_size",
    "files_quota",
    "files_auto_fetch",
    "files_max_rate",
    "files_chunk_size",
    "expire_after",
    "edit_window",
)


class Settings:
    """Where things live and how long things take, for one home.

    Immutable, compared and hashed by value, like the frozen dataclass it replaces (importing
    dataclasses costs every command inspect and ast); ``replace`` makes a changed copy.
    """

    __slots__ = _FIELDS

    home: Path
    agent: str | None
    offline_timeout: float
    log_level: str
    relay_max_age: float
    relay_max_bytes: int
    files_max_size: int
    files_quota: int
    files_auto_fetch: int
    files_max_rate: int
    files_chunk_size: int
    expire_after: float
    edit_window: float

    def __init__(
        self,
        home: Path,
        agent: str | None,
        *,
        offline_timeout: float = DEFAULT_OFFLINE_TIMEOUT,
        log_level: str = "INFO",
        relay_max_age: float = DEFAULT_RELAY_MAX_AGE,
        relay_max_bytes: int = DEFAULT_RELAY_MAX_BYTES,
        files_max_size: int = DEFAULT_FILES_MAX_SIZE,
        files_quota: int = DEFAULT_FILES_QUOTA,
        files_auto_fetch: int = DEFAULT_FILES_AUTO_FETCH,
        files_max_rate: int = 0,
        files_chunk_size: int = DEFAULT_FILES_CHUNK_SIZE,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
        edit_window: float = DEFAULT_EDIT_WINDOW,
    ) -> None:
        values = (home, agent, offline_timeout, log_level, relay_max_age, relay_max_bytes,
                  files_max_size, files_quota, files_auto_fetch, files_max_rate, files_chunk_size,
                  expire_after, edit_window)  # fmt: skip
        for name, value in zip(_FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: Settings are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: Settings are immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Settings)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle, without __setattr__
        values = self._values()
        return _rebuild, (values,)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"Settings({fields})"

    def replace(self, **changes: Any) -> Settings:
        """A copy with the given fields changed (``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in _FIELDS}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"Settings has no field {sorted(unknown)[0]!r}")
        return Settings(**{**values, **changes})

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


def _rebuild(values: tuple[Any, ...]) -> Settings:
    return Settings(**dict(zip(_FIELDS, values, strict=True)))


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
    files = file.get("files", {})
    timeout = env.get("SWITCHBOARD_OFFLINE_TIMEOUT") or file.get("offline_timeout")
    return Settings(
        home=home_path,
        agent=agent or env.get("SWITCHBOARD_AGENT") or None,
        offline_timeout=float(timeout) if timeout else DEFAULT_OFFLINE_TIMEOUT,
        log_level=str(env.get("SWITCHBOARD_LOG_LEVEL") or file.get("log_level") or "INFO").upper(),
        relay_max_age=float(relay.get("max_age", DEFAULT_RELAY_MAX_AGE)),
        relay_max_bytes=int(relay.get("max_bytes", DEFAULT_RELAY_MAX_BYTES)),
        files_max_size=_size(env, files, "max_size", DEFAULT_FILES_MAX_SIZE),
        files_quota=_size(env, files, "quota", DEFAULT_FILES_QUOTA),
        files_auto_fetch=_size(env, files, "auto_fetch", DEFAULT_FILES_AUTO_FETCH),
        files_max_rate=_size(env, files, "max_rate", 0),
        files_chunk_size=min(
            DEFAULT_FILES_CHUNK_SIZE,
            max(4096, _size(env, files, "chunk_size", DEFAULT_FILES_CHUNK_SIZE)),
        ),
        expire_after=float(
            env.get("SWITCHBOARD_EXPIRE_AFTER") or file.get("expire_after") or DEFAULT_EXPIRE_AFTER
        ),
        edit_window=float(
            env.get("SWITCHBOARD_EDIT_WINDOW") or file.get("edit_window") or DEFAULT_EDIT_WINDOW
        ),
    )


def _size(env: dict[str, str], table: dict[str, Any], key: str, default: int) -> int:
    """A byte count from ``SWITCHBOARD_FILES_<KEY>``, else ``[files] key``, else ``default``."""
    text = env.get("SWITCHBOARD_FILES_" + key.upper()) or table.get(key)
    try:
        return max(0, int(text)) if text not in (None, "") else default
    except ValueError:
        return default


def ensure_home(home: Path) -> None:
    """Create the home directory, private to the user."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)


def load_pairing_settings(home: Path, env: dict[str, str] | None = None) -> tuple[str | None, bool]:
    """Return the pairing relay and whether the daemon announces itself on the LAN.

    ``SWITCHBOARD_PAIRING_RELAY`` or ``[pairing] relay`` in ``config.toml``: the relay where
    pairing codes meet when the group's link is not a relay and none is given (docs/pairing.md).
    ``SWITCHBOARD_ANNOUNCE=1`` or ``[discovery] announce = true``: the daemon announces this
    device (name, short id, key fingerprint; no secret, no group) over mDNS.
    """
    env = dict(os.environ) if env is None else env
    file = _read_toml(home / "config.toml")
    relay = env.get("SWITCHBOARD_PAIRING_RELAY") or file.get("pairing", {}).get("relay") or None
    flag = env.get("SWITCHBOARD_ANNOUNCE")
    if flag is None:
        announce = bool(file.get("discovery", {}).get("announce", False))
    else:
        announce = flag.strip().lower() in ("1", "true", "yes", "on")
    return (str(relay) if relay else None), announce
