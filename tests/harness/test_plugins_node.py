"""Our OpenCode plugin and Pi extension, run by node against a real daemon with a fake harness."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness_kit import PY, Device, Lines, events_of, timeout

from switchboard.harnesses.opencode import plugin_source
from switchboard.harnesses.setup import Setup

DRIVER = Path(__file__).with_name("plugin_driver.mjs")


class Driver:
    """node running plugin_driver.mjs; step results are JSON lines."""

    def __init__(self, kind: str, plugin: Path, env: dict[str, str]) -> None:
        node = shutil.which("node")
        assert node, "node is needed to run the OpenCode plugin and the Pi extension"
        self.proc = subprocess.Popen(
            [node, str(DRIVER), kind, str(plugin)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines = Lines(self.proc.stdout)
        self.seen = 0

    def step(self, name: str) -> dict[str, Any]:
        match = self.lines.wait_for(f'"step":"{name}"', 60, self.seen)
        self.seen = self.lines.lines.index(match.string) + 1
        return json.loads(match.string)  # type: ignore[no-any-return]

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout(20))


def _plugin(tmp: Path, device: Device, asset: str) -> Path:
    setup = Setup(home=tmp, command=[PY, "-m", "switchboard"], switchboard_home=str(device.home))
    path = tmp / f"{asset}.mjs"
    path.write_text(plugin_source(setup, asset))
    return path


@pytest.fixture
def node_env(device: Device) -> dict[str, str]:
    return {**device.env, "SWITCHBOARD_HARNESS_PID": "4188001"}


def test_opencode_plugin_appends_to_tool_output_and_prompts_when_idle(
    device: Device, short_dir: Path, node_env: dict[str, str]
) -> None:
    """tool.execute.after gets the message appended; session.idle starts a turn with promptAsync."""
    driver = Driver("opencode", _plugin(short_dir, device, "opencode-plugin.js"), node_env)
    try:
        driver.step("ready")
        name = events_of(device, "session_started")[-1]["agent"].split(":")[0]
        device.call("send", agent="nova", to=[f"@{name}"], text="opencode mid-turn")
        driver.go()
        tool = driver.step("tool")
        assert tool["output"].startswith("edited a.ts\n\n<switchboard-inbox-")
        assert "opencode mid-turn" in tool["output"]
        assert events_of(device, "file_edited")[-1]["data"]["path"] == "/repo/a.ts"
        device.call("send", agent="nova", to=[f"@{name}"], text="opencode idle")
        driver.go()
        prompts = driver.step("idle")["prompts"]
        assert prompts[0]["path"] == {"id": "oc-s1"}
        assert "opencode idle" in prompts[0]["body"]["parts"][0]["text"]
    finally:
        driver.close()


def test_pi_extension_appends_to_tool_result_and_sends_follow_up(
    device: Device, short_dir: Path, node_env: dict[str, str]
) -> None:
    """tool_result gets the message as extra content; agent_end sends it with sendUserMessage."""
    driver = Driver("pi", _plugin(short_dir, device, "pi-extension.ts"), node_env)
    try:
        driver.step("ready")
        name = events_of(device, "session_started")[-1]["agent"].split(":")[0]
        device.call("send", agent="nova", to=[f"@{name}"], text="pi mid-turn")
        driver.go()
        content = driver.step("tool")["result"]["content"]
        assert content[0] == {"type": "text", "text": "ok"}
        assert "pi mid-turn" in content[1]["text"]
        assert events_of(device, "command_run")[-1]["data"]["command"] == "make test"
        device.call("send", agent="nova", to=[f"@{name}"], text="pi after the run")
        driver.go()
        sent = driver.step("end")["sent"]
        assert "pi after the run" in sent[0]["text"]
        assert sent[0]["options"] == {"deliverAs": "followUp"}
    finally:
        driver.close()
