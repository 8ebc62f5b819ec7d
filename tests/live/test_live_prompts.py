"""The real Gemini CLI and OpenCode, spawned headless, ask a permission that travels.

A spawned task of either runs the harness as an ACP agent under our ACP client
(harnesses/acp.py). The stand-in answers the model's first request with one shell tool call
that writes a file; the harness asks its client for permission, so the task blocks and the
prompt shows in ``switchboard approvals`` (the CLI). ``approve`` lets the tool run: the file
appears and the model's next request carries the tool's result, and a nudge sent while the
prompt was pending reaches the model (OpenCode: on the tool's result, through our plugin;
Gemini, whose ACP mode runs no hooks: as the next prompt, from our ACP client). ``deny``
keeps it from running: the file never appears, and the model's next request carries the
refusal (OpenCode ends its turn on a refusal unless ``experimental.continue_loop_on_deny`` is
set, which the user's config here sets, so the model sees it).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standin as standin_module
from drivers import Gemini, OpenCode
from live_kit import Device, Home
from standin import Standin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordination"))

from coord_cluster import wait_until

from switchboard.tasks.commands import BUILTIN

# Slow (real harness turns answering prompts): `make test-slow`, which CI runs too.
pytestmark = pytest.mark.slow

COMMAND = "echo hi > made.txt"
NUDGE = "nudge-while-blocked: keep the file short"
DRIVERS = {"gemini": Gemini(), "opencode": OpenCode()}
# What each harness tells its model about a refused call (its own words, in the tool result).
REFUSED = {"gemini": "was canceled by the user", "opencode": "The user rejected permission"}


@pytest.fixture(params=sorted(DRIVERS))
def spawned(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Device, Home, Standin]]:
    """One device whose daemon runs as a throwaway user of this harness (pointed at the
    stand-in, Switchboard installed, shell commands asking), and a policy letting its own
    user spawn the harness in the project directory."""
    harness = request.param
    driver = DRIVERS[harness]
    monkeypatch.setattr(standin_module, "COMMAND", COMMAND)
    root = Path(tempfile.mkdtemp(prefix="sbp-", dir="/tmp"))
    device = Device(root / "dev", "dev")
    stand = Standin(driver.dialect)
    try:
        device.home.mkdir(parents=True)
        home = Home(root / "home", device)
        driver.prepare(home, stand.url)
        if harness == "opencode":
            config_path = home.path(".config", "opencode", "opencode.json")
            config = json.loads(config_path.read_text())
            config["permission"] = {"bash": "ask"}  # the shell command must ask
            config["experimental"] = {"continue_loop_on_deny": True}
            config_path.write_text(json.dumps(config, indent=2))
        device.env.update(home.env)
        device.env.update(driver.env(home, stand.url))
        device.start()
        device.call("init", name="dev")
        home.switchboard("install", harness, "--json")
        policy = device.home / "spawn.toml"
        policy.write_text(f'[local]\nharnesses = ["{harness}"]\ndirs = ["{home.work}"]\n')
        policy.chmod(0o600)
        yield harness, device, home, stand
    finally:
        stand.close()
        device.kill(signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _blocked(device: Device, harness: str, home: Home) -> tuple[str, dict[str, Any]]:
    """Spawn the task and wait for its prompt in ``switchboard approvals --json``."""
    answer = device.call("spawn", agent="boss", harness=harness, dir=str(home.work),
                         text="Write hi into made.txt.")  # fmt: skip
    assert answer["state"] == "running", answer

    def listed() -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = device.cli_json("approvals", agent="boss")
        return rows[0] if rows else None

    prompt = wait_until(listed, 120, f"{harness}'s permission prompt in approvals")
    assert prompt["task"] == answer["id"]
    assert "made.txt" in prompt["detail"], prompt
    assert device.call("task.show", task=answer["id"])["state"] == "blocked"
    return answer["id"], prompt


def _ended(device: Device, task: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        row: dict[str, Any] = device.call("task.show", task=task)
        return row if row["state"] in ("completed", "failed", "stopped", "killed") else None

    result: dict[str, Any] = wait_until(done, 180, "the task ended")
    return result


def _after_tool(stand: Standin) -> list[Any]:
    """The model's requests that carry the tool call's result."""
    return [r for r in stand.requests if r.step == "final"]


def test_live_prompt_approved_runs_the_tool(spawned: Any) -> None:
    """``approve`` from the CLI: the tool runs, and the model's next request has its result."""
    harness, device, home, stand = spawned
    assert BUILTIN[harness].prompts == "acp"
    task, prompt = _blocked(device, harness, home)
    device.call("task.nudge", agent="boss", task=task, text=NUDGE)
    done = device.cli("approve", prompt["prompt"], agent="boss")
    assert "allow" in done.stdout
    row = _ended(device, task)
    assert row["state"] == "completed", row
    assert (home.work / "made.txt").read_text() == "hi\n"
    after = _after_tool(stand)
    assert after, [r.step for r in stand.requests]
    assert not any(after[0].after_tool_call(words) for words in REFUSED.values())
    assert standin_module.FINAL in row["result"]
    if harness == "opencode":
        # Its plugin runs under ACP: the nudge sent while the prompt was pending rides on the
        # tool's result (tool.execute.after).
        assert after[0].after_tool_call(NUDGE), after[0].text[:3000]
    else:
        # Gemini's ACP mode runs no hooks: our ACP client sends the nudge as the next prompt
        # when the turn ends.
        assert not after[0].after_tool_call(NUDGE)
        assert any(NUDGE in r.text for r in after[1:]), [r.step for r in stand.requests]
    [unblocked] = device.call("events", type="task_unblocked", all_rooms=True)
    assert unblocked["data"]["answer"] == "allow"


def test_live_prompt_denied_the_model_sees_it(spawned: Any) -> None:
    """``deny`` from the CLI: the tool does not run, and the model hears it was refused."""
    harness, device, home, stand = spawned
    task, _ = _blocked(device, harness, home)
    device.cli("deny", task, "--reason", "not here", agent="boss")
    row = _ended(device, task)
    assert row["state"] == "completed", row
    assert not (home.work / "made.txt").exists()
    after = _after_tool(stand)
    assert after, [r.step for r in stand.requests]
    assert after[0].after_tool_call(REFUSED[harness]), after[0].text[:3000]
    [unblocked] = device.call("events", type="task_unblocked", all_rooms=True)
    assert (unblocked["data"]["answer"], unblocked["data"]["reason"]) == ("deny", "not here")
