"""Calls from a command into this device's daemon: connect (start it if need be), call, hang up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchboard.daemon.autostart import connect
from switchboard.daemon.client import DEFAULT_CALL_TIMEOUT

if TYPE_CHECKING:
    from switchboard.config import Settings


def params(**values: Any) -> dict[str, Any]:
    """Return the given params without the unset (``None``) ones, so the daemon's defaults hold."""
    return {key: value for key, value in values.items() if value is not None}


def call(
    settings: Settings,
    method: str,
    values: dict[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_CALL_TIMEOUT,
) -> Any:
    """Call one API method of the daemon of ``settings.home`` and return its result.

    Raises:
        SwitchboardError: the daemon's error, or ``DaemonUnavailable``.
    """
    with connect(settings) as client:
        return client.call(method, values or {}, timeout=timeout)
