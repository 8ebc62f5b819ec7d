"""The real Codex (pinned, tests/live/harnesses) trusts and runs our hooks after `install --trust`.

Codex 0.171 runs no hook it has not been told to trust, and ignores a project's ``.codex/``
until the project is trusted. These tests install with the real ``switchboard install`` into a
throwaway ``HOME``/``CODEX_HOME``, read Codex's own verdict from ``codex app-server``
(``hooks/list``), and run a real ``codex exec`` turn against a loopback stand-in for the
Responses API, watching our daemon: the agent registers (SessionStart) and ends offline
(SessionEnd), not busy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CODEX = HERE / "harnesses" / "node_modules" / ".bin" / "codex"
PY = sys.executable
FACTOR = float(os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1"))


class _Model(BaseHTTPRequestHandler):
    """Answers every Responses API call with one final message, streamed as Codex expects."""

    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send("application/json", b'{"object": "list", "data": []}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.requests.append(self.path)
        item = {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "done", "annotations": []}],
        }
        usage = {
            "input_tokens": 1,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 1,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 2,
        }
        response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
        done = {**response, "status": "completed", "output": [item], "usage": usage}
        events = [
            {"type": "response.created", "response": response},
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.completed", "response": done},
        ]
        body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        self._send("text/event-stream", body.encode())

    def _send(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class CodexHome:
    """A user home with Codex pointed at the stand-in, a project, and a Switchboard home."""

    root: Path
    env: dict[str, str]
    project: Path
    requests: list[str]

    @property
    def config(self) -> Path:
        return self.root / "home" / ".codex" / "config.toml"

    def sb(self, *args: str, cwd: Path | None = None, code: int | None = 0) -> str:
        done = subprocess.run(
            [PY, "-m", "switchboard", *args],
            env=self.env,
            cwd=cwd or self.root / "home",
            capture_output=True,
            text=True,
            timeout=60 * FACTOR,
            check=False,
        )
        if code is not None:
            assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    def hooks(self, cwd: Path) -> list[dict[str, Any]]:
        """Codex's own listing of the hooks it sees from ``cwd`` (``hooks/list``)."""
        lines = [
            {
                "id": 1,
                "method": "initialize",
                "params": {"clientInfo": {"name": "t", "version": "1"}},
            },
            {"method": "initialized"},
            {"id": 2, "method": "hooks/list", "params": {"cwds": [str(cwd)]}},
        ]
        proc = subprocess.Popen(
            [str(CODEX), "app-server"],
            env=self.env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        killer = threading.Timer(60 * FACTOR, proc.kill)  # a hung app-server fails the test
        killer.start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write("".join(json.dumps(line) + "\n" for line in lines))
            proc.stdin.flush()
            for line in proc.stdout:
                answer = json.loads(line) if line.startswith("{") else {}
                if answer.get("id") == 2:
                    listing = answer
                    break
            else:
                raise AssertionError("codex app-server ended without listing its hooks")
        finally:
            killer.cancel()
            proc.stdin.close()
            proc.wait(timeout=30 * FACTOR)
        return [h for entry in listing["result"]["data"] for h in entry["hooks"]]

    def doctor(self, cwd: Path) -> dict[str, dict[str, Any]]:
        checks = json.loads(self.sb("doctor", "--json", cwd=cwd, code=None))
        return {check["name"]: check for check in checks}


@pytest.fixture
def codex_home() -> Iterator[CodexHome]:
    """A throwaway HOME/CODEX_HOME whose Codex talks to a loopback stand-in model."""
    root = Path(tempfile.mkdtemp(prefix="sbcx-", dir="/tmp"))
    requests: list[str] = []
    handler = type("Model", (_Model,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = root / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        'model = "gpt-5"\nmodel_provider = "standin"\n\n'
        "[model_providers.standin]\n"
        'name = "standin"\n'
        f'base_url = "http://127.0.0.1:{server.server_port}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "STANDIN_API_KEY"\n'
    )
    project = root / "proj"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "SWITCHBOARD_HOME": str(root / "sb"),
        "PATH": f"{CODEX.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "STANDIN_API_KEY": "not-a-secret",
    }
    env.pop("SWITCHBOARD_AGENT", None)
    found = CodexHome(root, env, project, requests)
    try:
        yield found
    finally:
        found.sb("daemon", "stop", code=None)
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def ours(hooks: list[dict[str, Any]], source: str) -> dict[str, str]:
    """Our hooks of one source (user/project): event -> trust status."""
    return {
        h["eventName"]: h["trustStatus"]
        for h in hooks
        if h["source"] == source
        and "switchboard" in h["command"]
        and " hook codex " in h["command"]
    }


EVENTS = {
    "sessionStart", "userPromptSubmit", "postToolUse", "stop", "postCompact", "sessionEnd",
    "permissionRequest",
}  # fmt: skip


def test_codex_lists_our_hooks_trusted_after_install_trust(codex_home: CodexHome) -> None:
    """Untrusted after `install codex` (install and doctor say the fix); trusted after
    `--trust`; a project's hooks appear only once `--project --trust` trusted the project;
    uninstall takes our trust back and leaves the user's config."""
    home, project = codex_home.root / "home", codex_home.project
    said = codex_home.sb("install", "codex")
    assert "needs" in said and "switchboard install codex --trust" in said
    assert ours(codex_home.hooks(home), "user") == dict.fromkeys(EVENTS, "untrusted")
    check = codex_home.doctor(home)["codex user setup"]
    assert check["status"] == "fail" and "SessionEnd" in check["detail"]
    assert check["fix"].startswith("switchboard install codex --trust")

    said = codex_home.sb("install", "codex", "--trust")
    assert "trusted   7 hooks" in said
    assert ours(codex_home.hooks(home), "user") == dict.fromkeys(EVENTS, "trusted")
    assert codex_home.doctor(home)["codex user setup"]["status"] == "ok"

    said = codex_home.sb("install", "codex", "--project", cwd=project)
    assert f"Codex ignores {project / '.codex'}" in said
    assert ours(codex_home.hooks(project), "project") == {}
    check = codex_home.doctor(project)["codex project setup"]
    assert check["status"] == "fail"
    assert check["fix"].startswith("switchboard install codex --project --trust")
    codex_home.sb("install", "codex", "--project", "--trust", cwd=project)
    assert ours(codex_home.hooks(project), "project") == dict.fromkeys(EVENTS, "trusted")
    assert codex_home.doctor(project)["codex project setup"]["status"] == "ok"

    codex_home.sb("uninstall", "codex", "--project", cwd=project)
    codex_home.sb("uninstall", "codex")
    config = tomllib.loads(codex_home.config.read_text())
    assert set(config) == {"model", "model_provider", "model_providers"}, config


def test_codex_exec_runs_session_start_and_session_end_hooks(codex_home: CodexHome) -> None:
    """A real `codex exec` turn runs no untrusted hook; once trusted, SessionStart registers
    the agent and SessionEnd leaves it offline, not busy."""
    codex_home.sb("install", "codex")
    codex_home.sb("daemon", "start")

    def exec_turn() -> None:
        done = subprocess.run(
            [str(CODEX), "exec", "--skip-git-repo-check", "say done"],
            env=codex_home.env,
            cwd=codex_home.project,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120 * FACTOR,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]

    def events(kind: str) -> list[dict[str, Any]]:
        out = codex_home.sb("events", "--type", kind, "--json")
        return [json.loads(line) for line in out.splitlines()]

    exec_turn()
    assert codex_home.requests, "codex never asked the stand-in model"
    assert events("agent_registered") == []  # untrusted: Codex ran none of our hooks

    codex_home.sb("install", "codex", "--trust")
    exec_turn()
    (registered,) = events("agent_registered")
    assert registered["data"]["harness"] == "codex"
    agent = registered["agent"]
    statuses = [e["data"]["status"] for e in events("status_changed") if e["agent"] == agent]
    assert statuses[0] == "active" and "busy" in statuses
    assert statuses[-1] == "offline", statuses
    (stopped,) = events("session_stopped")
    assert stopped["agent"] == agent
