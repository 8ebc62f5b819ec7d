"""The real Claude Code resumed by ``switchboard resume``, against the loopback stand-in.

A task runs Claude Code headless as agent ``luna``; its installed SessionStart hook reports its
session. Once it has ended, a message comes for ``luna``, and ``resume luna`` continues that
session with ``claude -p --resume ID``: the stand-in must see, in the resumed request, both the
earlier exchange (the first prompt, from Claude Code's own session file) and the message (the
resumed task's prompt), and the agent must be ``luna`` again.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standin as standin_module
from drivers import Claude
from live_kit import Device, Home
from standin import Standin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordination"))

from coord_cluster import wait_until

FIRST = "Remember the code word PAPAYA-7, then run echo."
MESSAGE = "resume-message: the code word is now MANGO-3"
ENDED = ("completed", "failed", "stopped", "killed", "lost", "refused")


@pytest.fixture
def one() -> Iterator[tuple[Device, Home, Standin]]:
    """One device whose daemon runs as a throwaway user with Claude Code pointed at the
    stand-in, Switchboard installed for it, and a policy allowing Claude Code in its project."""
    root = Path(tempfile.mkdtemp(prefix="sbr-", dir="/tmp"))
    dev = Device(root / "dev", "dev")
    stand = Standin("anthropic")
    try:
        dev.home.mkdir(parents=True)
        home = Home(root / "home", dev)
        Claude().prepare(home, stand.url)
        dev.env.update(home.env)
        dev.env.update(Claude().env(home, stand.url))
        dev.start()
        dev.call("init", name=dev.name)
        home.switchboard("install", "claude", "--json")
        policy = dev.home / "spawn.toml"
        policy.write_text(f'[local]\nharnesses = ["claude"]\ndirs = ["{home.work}"]\n')
        policy.chmod(0o600)
        yield dev, home, stand
    finally:
        stand.close()
        dev.kill(signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _ended(dev: Device, task: str) -> dict[str, Any]:
    def look() -> dict[str, Any] | None:
        found: dict[str, Any] = dev.call("task.show", task=task)
        return found if found["state"] in ENDED else None

    return wait_until(look, 180, f"task {task} ended")


def test_live_claude_resumed_sees_its_earlier_exchange_and_its_messages(one: Any) -> None:
    dev, home, stand = one
    first = dev.call("spawn", agent="boss", harness="claude", dir=str(home.work), text=FIRST,
                     name="luna")  # fmt: skip
    assert first["state"] == "running", first
    done = _ended(dev, first["id"])
    assert done["state"] == "completed", done
    assert standin_module.FINAL in done["result"]
    wait_until(
        lambda: any(a["name"] == "luna" and a["status"] == "offline"
                    for a in dev.call("agents", all=True)),
        60, "luna offline",
    )  # fmt: skip
    dev.call("send", agent="nova", to=["@luna"], text=MESSAGE)
    before = len(stand.requests)
    resumed = dev.call("resume", agent="boss", who="luna")
    assert resumed["state"] == "running", resumed
    assert resumed["agent"].startswith("luna:") and resumed["messages"] == 1
    again = _ended(dev, resumed["id"])
    assert again["state"] == "completed", again
    later = [r for r in list(stand.requests)[before:] if r.step in ("tool", "final")]
    assert later, [r.step for r in stand.requests]
    assert any(FIRST in r.text and MESSAGE in r.text for r in later), [r.text[-400:] for r in later]
