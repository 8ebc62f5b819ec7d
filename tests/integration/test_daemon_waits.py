"""The daemon's change waits cannot lose a change that lands between a look and a wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

from switchboard.config import load_settings
from switchboard.daemon.queries import EventsParams, events_follow
from switchboard.daemon.service import Daemon
from switchboard.events import FileEdited
from switchboard.store.query import DEFAULT_MAX_ROWS


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


def test_daemon_follow_streams_a_burst_larger_than_the_row_limit(tmp_path: Path) -> None:
    """A follower reads a burst page by page: more events than one query may return, in order."""
    count = DEFAULT_MAX_ROWS + 50

    async def scenario() -> list[int]:
        daemon = Daemon(load_settings({"SWITCHBOARD_HOME": str(tmp_path / "home")}))
        try:
            await daemon.log.append_many(
                [("luna", FileEdited(path=f"f{n}.py", tool="Edit")) for n in range(count)]
            )
            follow = events_follow(
                daemon, EventsParams(after=0, type="file_edited", wait=0.01, all_rooms=True)
            )
            return [row["seq"] async for row in follow]
        finally:
            daemon.db.close()

    assert asyncio.run(scenario()) == list(range(1, count + 1))
