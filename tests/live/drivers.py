"""How to drive each real harness headless against a stand-in, in a throwaway home.

One ``Driver`` per harness: the model API it speaks (a stand-in dialect), the user's own
configuration written before ``switchboard install`` (the model provider, and entries of the
user's own that uninstall must leave working: a hook, plugin or extension that appends to
``~/user-hook.log`` after each shell command, settings, comments), its environment, and how a
turn runs headless. Each was checked against the pinned version's code and docs
(tests/live/harnesses/node_modules).

Claude Code, Codex and Gemini CLI run a whole turn, continuation included, inside one
``-p``/``exec`` process. OpenCode's ``run`` and Pi's ``-p`` exit as soon as the session goes
idle, before a plugin or extension could start a further turn, so their turns run in the
long-lived modes an editor uses: ``opencode serve`` (driven through its HTTP API) and
``pi --mode rpc``. docs/harnesses.md says why, with the code that decides it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from live_kit import BIN, Home, Lines, Turn, free_port, timeout
from standin import Recorded, Standin

from switchboard.harnesses import codexapp

PROMPT = "Run `echo hi` in the shell, then say what it printed."
Until = Callable[[list[Recorded]], bool]
# The user's own hook: appends the harness's name to ~/user-hook.log after a shell command.
USER_HOOK = 'echo {name} >> "$HOME/user-hook.log"'
# How long a long-lived harness may take to start the further turn a plugin asked for.
FOLLOW_UP_WAIT = 30.0


class Driver:
    """One harness, headless."""

    name: ClassVar[str]
    dialect: ClassVar[str]
    #: What ``switchboard install`` gets beyond the harness's name.
    install_args: ClassVar[tuple[str, ...]] = ()
    #: The user's files the harness itself rewrites as it runs (home-relative).
    rewrites: ClassVar[tuple[str, ...]] = ()

    def prepare(self, home: Home, url: str) -> list[Path]:
        """Write the user's own config (model provider and user entries); the files written."""
        raise NotImplementedError

    def env(self, home: Home, url: str) -> dict[str, str]:
        """The harness's environment beyond the home's (endpoint, dummy key, no telemetry)."""
        return {}

    def turn(self, home: Home, standin: Standin, until: Until | None = None) -> Turn:
        """Run one prompt to the end of its turn; with ``until``, also wait (a while) for the
        further requests a plugin starts after the turn, until ``until`` holds."""
        raise NotImplementedError

    def user_hook_runs(self, home: Home) -> int:
        """How often the user's own hook ran so far."""
        log = home.path("user-hook.log")
        return log.read_text().split().count(self.name) if log.exists() else 0


class Claude(Driver):
    """Claude Code: ``claude -p``, the Messages API at ``ANTHROPIC_BASE_URL``."""

    name = "claude"
    dialect = "anthropic"
    rewrites = (".claude.json",)  # Claude Code's state file: start counts, projects, tips

    def prepare(self, home: Home, url: str) -> list[Path]:
        hook = {"type": "command", "command": USER_HOOK.format(name=self.name)}
        settings = {
            "permissions": {"allow": ["Bash(echo:*)"]},
            "env": {"USER_OWN_SETTING": "kept"},
            "hooks": {"PostToolUse": [{"matcher": "Bash", "hooks": [hook]}]},
        }
        state = {"hasCompletedOnboarding": True, "userOwnKey": "kept"}
        return [
            home.write(".claude/settings.json", json.dumps(settings, indent=2) + "\n"),
            home.write(".claude.json", json.dumps(state, indent=2) + "\n"),
        ]

    def env(self, home: Home, url: str) -> dict[str, str]:
        return {
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "sk-ant-stand-in",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }

    def turn(self, home: Home, standin: Standin, until: Until | None = None) -> Turn:
        argv = [str(BIN / "claude"), "-p", PROMPT]
        return home.run(argv, standin, self.env(home, standin.url))


class Codex(Driver):
    """Codex CLI: ``codex exec``, the Responses API through a custom provider."""

    name = "codex"
    dialect = "responses"
    install_args = ("--trust",)  # Codex runs no hook the user has not trusted

    def prepare(self, home: Home, url: str) -> list[Path]:
        config = (
            "# my own Codex settings\n"
            'model = "stand-in"\n'
            'model_provider = "standin"\n'
            'approval_policy = "never"\n'
            'sandbox_mode = "danger-full-access"\n'
            "\n"
            "[model_providers.standin]\n"
            'name = "Stand-in"\n'
            f'base_url = "{url}/v1"\n'
            'env_key = "STANDIN_API_KEY"\n'
            'wire_api = "responses"\n'
        )
        hook = {"type": "command", "command": USER_HOOK.format(name=self.name)}
        hooks = {"hooks": {"PostToolUse": [{"matcher": "*", "hooks": [hook]}]}}
        written = [
            home.write(".codex/config.toml", config),
            home.write(".codex/hooks.json", json.dumps(hooks, indent=2) + "\n"),
        ]
        trust_codex_hooks(home, self.env(home, url), "user-hook.log")  # reviewed long ago
        return written

    def env(self, home: Home, url: str) -> dict[str, str]:
        return {"CODEX_HOME": str(home.path(".codex")), "STANDIN_API_KEY": "stand-in"}

    def turn(self, home: Home, standin: Standin, until: Until | None = None) -> Turn:
        argv = [str(BIN / "codex"), "exec", "--skip-git-repo-check", PROMPT]
        return home.run(argv, standin, self.env(home, standin.url))


def trust_codex_hooks(home: Home, env: dict[str, str], marker: str) -> list[str]:
    """Trust the Codex hooks whose command holds ``marker``, as Codex's ``/hooks`` review does
    (through its app-server, harnesses/codexapp.py); the keys trusted."""
    with codexapp.AppServer(str(BIN / "codex"), cwd=home.work, env={**home.env, **env}) as app:
        listed = app.call("hooks/list", {"cwds": [str(home.work)]})
        fields = ("key", "eventName", "source", "sourcePath", "currentHash", "trustStatus")
        hooks = [
            codexapp.Hook(*(str(h[name]) for name in fields))
            for entry in listed["data"]
            for h in entry["hooks"]
            if marker in str(h.get("command"))
        ]
        assert hooks, f"codex lists no hook with {marker!r}: {listed}"
        codexapp.trust_hooks(app, hooks)
    return [hook.key for hook in hooks]


class Gemini(Driver):
    """Gemini CLI: ``gemini -p``, generateContent at ``GOOGLE_GEMINI_BASE_URL``."""

    name = "gemini"
    dialect = "gemini"

    def prepare(self, home: Home, url: str) -> list[Path]:
        hook = {"type": "command", "name": "my-log", "command": USER_HOOK.format(name=self.name)}
        group = {"matcher": "run_shell_command", "hooks": [hook]}
        settings = (
            "// my own Gemini CLI settings\n"
            "{\n"
            '  "security": {"auth": {"selectedType": "gemini-api-key"}},\n'
            '  "privacy": {"usageStatisticsEnabled": false},\n'
            f'  "hooks": {{"AfterTool": [{json.dumps(group)}]}}\n'
            "}\n"
        )
        return [home.write(".gemini/settings.json", settings)]

    def env(self, home: Home, url: str) -> dict[str, str]:
        return {
            "GOOGLE_GEMINI_BASE_URL": url,
            "GEMINI_API_KEY": "stand-in",
            # The folder trust a user grants at the first start (in an untrusted folder Gemini
            # disables MCP servers and overrides the approval mode).
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            # Run in this process instead of re-executing itself with a larger heap.
            "GEMINI_CLI_NO_RELAUNCH": "true",
        }

    def turn(self, home: Home, standin: Standin, until: Until | None = None) -> Turn:
        argv = [str(BIN / "gemini"), "-p", PROMPT, "--approval-mode", "yolo"]
        return home.run(argv, standin, self.env(home, standin.url))


class OpenCode(Driver):
    """OpenCode: ``opencode serve`` and its HTTP API (what ``opencode run --attach`` and the
    SDK call), a chat completions provider in opencode.json."""

    name = "opencode"
    dialect = "chat"
    PLUGIN = (
        "export const MyLog = async ({ $ }) => ({\n"
        '  "tool.execute.after": async (input) => {\n'
        '    if (input.tool === "bash") await $`sh -c ${%s}`;\n'
        "  },\n"
        "});\n"
    )

    def prepare(self, home: Home, url: str) -> list[Path]:
        config = {
            "$schema": "https://opencode.ai/config.json",
            "provider": {
                "standin": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "Stand-in",
                    "options": {"baseURL": f"{url}/v1", "apiKey": "stand-in"},
                    "models": {"stand-in": {"name": "Stand-in", "tool_call": True}},
                }
            },
            "model": "standin/stand-in",
            "permission": {"bash": "allow"},
            "autoupdate": False,
            "share": "disabled",
        }
        base = ".config/opencode"
        plugin = self.PLUGIN % json.dumps(USER_HOOK.format(name=self.name))
        return [
            home.write(f"{base}/opencode.json", json.dumps(config, indent=2) + "\n"),
            home.write(f"{base}/plugins/my-log.js", plugin),
            *seed_opencode_dependencies(home, base),
        ]

    def env(self, home: Home, url: str) -> dict[str, str]:
        return {
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            # Should OpenCode still try to install a package, it fails at once on loopback.
            "npm_config_registry": "http://127.0.0.1:9/",
        }

    def turn(self, home: Home, standin: Standin, until: Until | None = None) -> Turn:
        env = self.env(home, standin.url)
        port = free_port()
        started = time.monotonic()
        serve = home.start(
            [str(BIN / "opencode"), "serve", "--hostname", "127.0.0.1", "--port", str(port)],
            env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        output = Lines(serve.stdout)
        try:
            output.wait_for(r"listening on", 60)
            api = OpenCodeApi(f"http://127.0.0.1:{port}", home.work)
            session = api.call("POST", "/session", {})
            parts = [{"type": "text", "text": PROMPT}]
            answer = api.call("POST", f"/session/{session['id']}/message", {"parts": parts})
            if until is not None:
                standin.wait_for(until, timeout(FOLLOW_UP_WAIT))
        finally:
            serve.terminate()
            serve.communicate(timeout=timeout(20))
        text = "".join(p.get("text", "") for p in answer.get("parts", []) if p["type"] == "text")
        return home.turn(standin, 0, text, "".join(output.lines), started)


class OpenCodeApi:
    """The few calls of OpenCode's server API a turn needs (JSON over HTTP on loopback)."""

    def __init__(self, url: str, directory: Path) -> None:
        self.url = url
        self.directory = directory

    def call(self, method: str, path: str, body: Any) -> Any:
        query = urllib.parse.urlencode({"directory": str(self.directory)})
        request = urllib.request.Request(
            f"{self.url}{path}?{query}",
            method=method,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout(120)) as response:
            return json.loads(response.read() or b"null")


def seed_opencode_dependencies(home: Home, base: str) -> list[Path]:
    """The state OpenCode leaves after its first start with a plugin: its plugin package
    recorded as installed, so it does not install it from npm (the network) again.

    OpenCode 1.18 installs ``@opencode-ai/plugin`` into every config directory that holds
    plugins unless ``node_modules`` exists and package-lock.json lists every dependency of
    package.json (``Npm.install``, ``Npm.checkDirty``); neither plugin here imports it.
    """
    dependency = {"@opencode-ai/plugin": "1.18.33"}
    lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": dependency}}}
    home.path(base, "node_modules").mkdir(parents=True, exist_ok=True)
    return [
        home.write(f"{base}/package.json", json.dumps({"dependencies": dependency}) + "\n"),
        home.write(f"{base}/package-lock.json", json.dumps(lock) + "\n"),
    ]


class Pi(Driver):
    """Pi: ``pi --mode rpc``, a chat completions provider in models.json."""

    name = "pi"
    dialect = "chat"
    EXTENSION = (
        'import { execSync } from "node:child_process";\n'
        "export default function (pi) {\n"
        '  pi.on("tool_result", async (event) => {\n'
        '    if (event.toolName === "bash") execSync(%s);\n'
        "  });\n"
        "}\n"
    )

    def prepare(self, home: Home, url: str) -> list[Path]:
        models = {
            "providers": {
                "standin": {
                    "baseUrl": f"{url}/v1",
                    "api": "openai-completions",
                    "apiKey": "stand-in",
                    "compat": {"supportsDeveloperRole": False, "supportsReasoningEffort": False},
                    "models": [{"id": "stand-in", "name": "Stand-in"}],
                }
            }
        }
        settings = {"defaultProvider": "standin", "defaultModel": "stand-in"}
        extension = self.EXTENSION % json.dumps(USER_HOOK.format(name=self.name))
        return [
            home.write(".pi/agent/models.json", json.dumps(models, indent=2) + "\n"),
            home.write(".pi/agent/settings.json", json.dumps(settings, indent=2) + "\n"),
            home.write(".pi/agent/extensions/my-log.ts", extension),
        ]

    def env(self, home: Home, url: str) -> dict[str, str]:
        # No network at start-up (PI_OFFLINE: version check, packages), no install telemetry.
        return {"PI_OFFLINE": "1", "PI_TELEMETRY": "0"}

    def turn(self, home: Home, standin: Standin, until: Until | None = None) -> Turn:
        started = time.monotonic()
        argv = [str(BIN / "pi"), "--mode", "rpc"]
        env = self.env(home, standin.url)
        proc = home.start(argv, env, stdin=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdin is not None
        events = Lines(proc.stdout)
        end = r'"type":\s*"agent_end"'
        try:
            proc.stdin.write(json.dumps({"type": "prompt", "message": PROMPT}) + "\n")
            proc.stdin.flush()
            first = events.wait_for(end, 90)
            if until is not None and standin.wait_for(until, timeout(FOLLOW_UP_WAIT)):
                events.wait_for(end, 60, start=events.lines.index(first.string) + 1)
            proc.stdin.close()  # the end of input: Pi shuts down
            code = proc.wait(timeout(20))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return home.turn(standin, code, "".join(events.lines), "", started)


DRIVERS: dict[str, Driver] = {d.name: d for d in (Claude(), Codex(), Gemini(), OpenCode(), Pi())}
