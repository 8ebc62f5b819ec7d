"""The daemon's change waits cannot lose a change that lands between a look and a wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

from switchboard.config import load_settings
from switchboard.daemon.service import Daemon


def test_daemon_wait_advanced_sees_a_change_made_before_the_wait(tmp_path: Path) -> None:
    """A change after the caller's mark ends the wait at once instead of timing out."""

    async def scenario() -> tuple[bool, bool]:
        daemon = Daemon(load_settings({"SWITCHBOARD_HOME": str(tmp_path / "home")}))
        try:
            mark = daemon.changes
            daemon._wake_followers()  # a commit lands after the look, before the wait
            caught = await daemon.wait_advanced(0.01, since=mark)
            quiet = await daemon.wait_advanced(0.01, since=daemon.changes)
            return caught, quiet
        finally:
            daemon.db.close()

    caught, quiet = asyncio.run(scenario())
    assert caught is True
    assert quiet is False
