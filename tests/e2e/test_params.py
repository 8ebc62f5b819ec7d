"""A parameter is declared once, in its API method's params Struct (``REGISTRY.params``).

The CLI's options and the MCP tools' arguments turn into the params of daemon calls; these
tests run every CLI command and every MCP tool against a recording stand-in and check that
each call names a method of the registry and only params its Struct declares, so an option
cannot drift from (or silently miss) the parameter it means.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import AGENT, EVENT, GROUP, INVITE, LINK, MESSAGE, command_paths

from switchboard.cli.main import main
from switchboard.cli.parser import build_parser
from switchboard.config import load_settings
from switchboard.daemon.api import ApiServer
from switchboard.daemon.features import REGISTRY
from switchboard.mcp.bridge import Bridge
from switchboard.mcp.server import build_registry

# One run per CLI command that calls the daemon, giving each of its options.
CLI_RUNS: dict[str, list[str]] = {
    "init": ["init", "--name", "laptop"],
    "status": ["status"],
    "devices": ["devices"],
    "ping": ["ping", "--count", "2", "--interval", "0", "--timeout", "1", "BOXE"],
    "group create": ["group", "create", "--name", "team", "--relay", "ws://127.0.0.1:9"],
    "invite": ["invite", "--group", "team"],
    "join": ["join", INVITE, "--relay", "ws://relay.lan:7787"],
    "link on": ["link", "on", "--group", "team"],
    "link off": ["link", "off", "--group", "team"],
    "link status": ["link", "status", "--group", "team"],
    "agents": ["agents"],
    "send": [
        "send", "--thread", "t1", "--reply-to", "7", "--intent", "request", "--priority",
        "urgent", "--wait", "read", "--timeout", "1", "@nova", "--", "hi",
    ],
    "inbox": ["inbox", "--wait", "0", "--peek"],
    "events": ["events", "--type", "message_posted", "--agent", "luna", "--where", "1", "--last",
               "3", "--follow", "--wait", "0"],
    "room create": ["room", "create", "--private", "--description", "d", "team"],
    "room join": ["room", "join", "team"],
    "room leave": ["room", "leave", "team"],
    "room invite": ["room", "invite", "team", "@nova"],
    "room kick": ["room", "kick", "team", "@nova"],
    "room list": ["room", "list"],
    "room members": ["room", "members", "team"],
    "room read": ["room", "read", "--last", "3", "--since", "1", "team"],
    "set status": ["set", "status", "busy"],
    "set summary": ["set", "summary", "porting", "the", "parser"],
    "set tags": ["set", "tags", "backend", "db"],
    "set visibility": ["set", "visibility", "hidden"],
    "thread show": ["thread", "show", "7"],
    "search": ["search", "--room", "team", "--agent", "@nova", "--limit", "5", "parser"],
    "sent": ["sent", "--last", "3"],
    "lease acquire": ["lease", "acquire", "--ttl", "10m", "--reason", "r", "--exclusive", "a.py"],
    "lease release": ["lease", "release", "a.py"],
    "lease list": ["lease", "list", "--all"],
    "lease check": ["lease", "check", "a.py"],
    "spawn allow": ["spawn", "allow", "LAPT", "--harness", "claude", "--dir", "/srv"],
    "spawn deny": ["spawn", "deny", "LAPT"],
    "spawn policy": ["spawn", "policy"],
    "transcript": ["transcript", "--last", "3", "--before", "9", "--full", "--session", "s",
                   "--timeout", "5", "luna:BOXE"],
    "tasks": ["tasks", "--all"],
    "task show": ["task", "show", "k7m2"],
    "task logs": ["task", "logs", "--follow", "k7m2"],
    "task nudge": ["task", "nudge", "k7m2", "--", "hurry"],
    "task stop": ["task", "stop", "k7m2"],
    "task kill": ["task", "kill", "k7m2"],
    "approvals": ["approvals"],
    "approve": ["approve", "pabc"],
    "deny": ["deny", "--reason", "no", "pabc"],
    "term": ["term", "--type", "make test", "--enter", "--key", "Up", "--secret", "luna:BOXE"],
    "device forget": ["device", "forget", "LAPT"],
    "handoff": ["handoff", "luna", "--to", "VPS1", "--dir", "/srv/app", "--harness", "codex",
                "--name", "sol", "--note", "n"],
    "resume": ["resume", "--on", "local", "--terminal", "luna"],
    "fork": ["fork", "--dir", "/srv/app", "--name", "sol", "luna"],
    "file send": ["file", "send", "--name", "r.txt", "@nova", "/tmp/r.txt", "--", "a", "note"],
    "file get": ["file", "get", "-o", "/tmp", "--force", "abc123"],
    "files": ["files", "--all"],
    "run": ["run", "--dry-run", "--detach", "--json", "/dev/null"],
    "plans": ["plans"],
    "plan show": ["plan", "show", "--wait", "p1"],
}  # fmt: skip
# Commands that make no daemon call with params of their own (or start processes).
NO_PARAMS = {
    "daemon run", "daemon start", "daemon stop", "daemon status", "relay serve", "mcp", "hook",
    "install", "uninstall", "lease git-hook install", "doctor", "discover",
}  # fmt: skip
LISTS = {
    "agents", "inbox", "events", "room.list", "room.members", "room.read", "thread.show",
    "search", "sent", "lease.list", "link.set", "link.status", "link.sync",
    "events.subscriptions", "devices", "tasks", "approvals", "files",
    "plans",
}  # fmt: skip
CANNED: dict[str, Any] = {
    "agents": [AGENT],
    "inbox": [MESSAGE],
    "events": [EVENT],
    "group.create": {"group": GROUP, "invite": INVITE},
    "invite": {"invite": INVITE},
    "join": {"group": GROUP},
    "link.status": [LINK],
    "send": {"id": 43, "result": "queued", "recipients": []},
    "message.get": {"id": 7, "from": "nova:ABCD", "ref": "o/1", "thread": None,
                    "recipients": ["luna:o"]},
    "agent.identify": {"name": "luna", "agent": "luna:BOXE", "context": "mcp:x"},
    "inbox.take": {"messages": [], "events": [], "text": "", "left_out": 0},
    "spawn.policy": {"max_tasks": 4, "max_runtime": 60.0, "grace": 1.0, "devices": [],
                     "harnesses": {}, "local": {"allowed": False}},
    "spawn.deny": {"changed": True, "policy": {"max_tasks": 4, "max_runtime": 60.0,
                   "grace": 1.0, "devices": [], "harnesses": {}, "local": {"allowed": False}}},
    "task.show": {"id": "k7m2qx9a", "state": "running", "device": "BOXE", "harness": "cmd",
                  "agent": None, "requester": "luna:BOXE", "dir": "/", "requested": None,
                  "started": None, "runtime": None, "exit_status": None, "reason": "",
                  "window": "", "prompt": None, "text": "t", "diff_stat": "", "output": None,
                  "progress": "", "result": ""},
    "task.nudge": {"id": 43, "result": "queued", "recipients": []},
    "task.stop": {"id": "k7m2qx9a", "asked": "stop"},
    "task.kill": {"id": "k7m2qx9a", "asked": "kill"},
    "prompt.answer": {"prompt": "pabc", "task": "k7m2qx9a", "answer": "allow"},
}  # fmt: skip
CANNED["spawn.allow"] = CANNED["spawn.policy"]

Calls = list[tuple[str, dict[str, Any]]]


def _answer(method: str) -> Any:
    return CANNED.get(method, [] if method in LISTS else {})


def undeclared(calls: Calls) -> list[str]:
    """Each call to an unknown method, or naming a param its method's Struct lacks."""
    wrong = []
    for method, params in calls:
        if method not in REGISTRY.names:
            wrong.append(f"unknown method {method}")
            continue
        fields = set(REGISTRY.params[method].__struct_fields__)
        wrong += [f"{method}: {name}" for name in sorted(set(params) - fields)]
    return wrong


def recording_dispatch(calls: Calls) -> dict[str, tuple[Callable[[Any], Any], bool]]:
    """An API dispatch table over every registry method that records and answers canned."""

    def method(name: str) -> Callable[[Any], Any]:
        async def call(params: Any) -> Any:
            calls.append((name, params))
            return _answer(name)

        return call

    def stream(name: str) -> Callable[[Any], Any]:
        async def follow(params: Any) -> AsyncIterator[Any]:
            calls.append((name, params))
            for item in ():
                yield item

        return follow

    table = {name: (method(name), False) for name in REGISTRY.methods}
    table.update({name: (stream(name), True) for name in REGISTRY.streams})
    return table


def test_params_every_cli_command_is_checked() -> None:
    """Every leaf command either has a run below or makes no daemon call with params."""
    parser = build_parser()
    leaves = {
        " ".join(path) for path, sub, _ in command_paths(parser) if not list(command_paths(sub))
    }
    assert leaves == set(CLI_RUNS) | NO_PARAMS


@pytest.mark.parametrize("name", sorted(CLI_RUNS))
def test_params_cli_options_are_declared_params(
    name: str,
    serve: Callable[..., ApiServer],
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command calls the daemon with params its methods' Structs declare, and no others."""
    monkeypatch.setenv("SWITCHBOARD_HOME", str(short_tmp))
    monkeypatch.setenv("SWITCHBOARD_AGENT", "luna")
    monkeypatch.chdir(short_tmp)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    calls: Calls = []
    serve(recording_dispatch(calls), load_settings(home=short_tmp).socket_path)
    # The canned answers do not fit every command's printing; only the calls matter here.
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        main(CLI_RUNS[name])
    assert calls, f"switchboard {name} made no daemon call"
    assert undeclared(calls) == []


class RecordingBridge(Bridge):
    """The MCP server's real bridge, with the socket replaced by a recorder."""

    def __init__(self, calls: Calls, tmp: Path) -> None:
        super().__init__(load_settings(env={}, home=tmp), agent="luna")
        self.calls = calls

    async def raw(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        self.calls.append((method, dict(params)))
        return _answer(method)


def _sample(spec: dict[str, Any]) -> Any:
    """A value a JSON schema property accepts."""
    if "enum" in spec:
        return spec["enum"][0]
    if "anyOf" in spec:
        return _sample(spec["anyOf"][0])
    kind = spec.get("type")
    if kind == "array":
        return [_sample(spec.get("items", {"type": "string"}))]
    samples = {"integer": 7, "number": 1, "boolean": True, "object": {}}
    return samples.get(str(kind), "x")


@pytest.mark.parametrize("tool", [t.name for t in build_registry()])
def test_params_mcp_tool_arguments_become_declared_params(tool: str, short_tmp: Path) -> None:
    """With every argument it accepts, the tool calls the daemon with declared params only."""
    registry = build_registry()
    found = registry.get(tool)
    assert found is not None
    args = {k: _sample(v) for k, v in found.input_schema.get("properties", {}).items()}
    calls: Calls = []
    bridge = RecordingBridge(calls, short_tmp)

    async def run() -> None:
        with contextlib.suppress(Exception):
            await found.handler(bridge, args)

    asyncio.run(run())
    assert calls, f"{tool} made no daemon call"
    assert undeclared(calls) == []


def test_params_files_gc_options_are_declared_params(
    serve: Callable[..., ApiServer], short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``files gc`` calls files.gc with its declared params (keep_bytes, max_age) only."""
    monkeypatch.setenv("SWITCHBOARD_HOME", str(short_tmp))
    calls: Calls = []
    serve(recording_dispatch(calls), load_settings(home=short_tmp).socket_path)
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        main(["files", "gc", "--keep", "500M", "--max-age", "2"])
    assert calls == [("files.gc", {"keep_bytes": 500 * 1024**2, "max_age": 2 * 86400.0})]
    assert undeclared(calls) == []
