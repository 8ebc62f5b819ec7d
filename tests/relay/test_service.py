"""``run_relay`` as a process: it announces its URL, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay_client import WAIT, Device

SCRIPT = """
import asyncio, sys
from pathlib import Path
from switchboard.relay.service import run_relay
data = Path(sys.argv[2]) if len(sys.argv) > 2 else None
asyncio.run(run_relay(Path(sys.argv[1]), "127.0.0.1", 0, data))
"""


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str, str]:
    """Start ``run_relay`` in a subprocess; return it, its announced URL and its short id."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, *args, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), WAIT)).decode()
    match = re.fullmatch(r"relay listening on (ws://127\.0\.0\.1:\d+) \(id ([A-Z]{4})\)\n", line)
    assert match, line
    return proc, match.group(1), match.group(2)


def test_run_relay_serves_until_sigterm(
    run: Callable[..., Any], tmp_path: Path, group: tuple[str, bytes]
) -> None:
    """The relay prints its URL, serves devices, and exits 0 on SIGTERM."""

    async def main() -> int:
        proc, url, _ = await start(str(tmp_path / "home"), str(tmp_path / "data"))
        try:
            a = await (await Device(url, *group, create=True).connect()).wait_established()
            proc.send_signal(signal.SIGTERM)
            closed = await a.wait_closed()
            assert closed.reason == "relay shutting down"
            return await asyncio.wait_for(proc.wait(), WAIT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert run(main()) == 0
    assert (tmp_path / "data" / "relay.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "relay.db").exists()


def test_run_relay_keeps_its_identity_under_the_home(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    """Without a data directory the relay lives in <home>/relay and keeps its id across runs."""

    async def once() -> str:
        proc, _, relay_id = await start(str(tmp_path / "home"))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        return relay_id

    assert run(once()) == run(once())
    assert (tmp_path / "home" / "relay" / "relay.db").exists()
