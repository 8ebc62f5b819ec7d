"""Codex's hook trust, through its own ``codex app-server`` (JSON-RPC over stdio).

Codex (0.171) runs a non-managed hook only once the user trusted it: ``hooks/list`` reports
each hook with its ``key`` (``<hooks.json path>:<event>:<group>:<handler>``), the hash of
its current definition (``currentHash``) and ``trustStatus`` (``trusted``, ``untrusted``,
``modified``, ``managed``). Trust is the user config's ``[hooks.state."<key>"] trusted_hash``,
which the TUI's ``/hooks`` writes through ``config/batchWrite``; we write it the same way, so
Codex computes the hashes and formats its own file. Project-level ``.codex/`` files count only
once the project (its root: the nearest folder holding ``.git``) is trusted,
``[projects."<root>"] trust_level = "trusted"`` (codex.trust_project writes it, tagged);
until then ``hooks/list`` does not list them.

This talks to the one ``codex`` the caller found; nothing here runs a model or opens the TUI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from switchboard.errors import UserError
from switchboard.harnesses.configfiles import is_ours

# How long one app-server exchange may take: it starts in about 0.3 s; a first start that
# migrates Codex's state databases takes a few seconds more.
DEFAULT_TIMEOUT: Final = 30.0
_EVENT_WORD = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(frozen=True)
class Hook:
    """One of our hooks as Codex lists it."""

    key: str
    event: str
    source: str  # "user" or "project"
    source_path: str
    current_hash: str
    trust: str  # "trusted", "untrusted", "modified", "managed"


class AppServer:
    """One ``codex app-server`` process on stdio; a context manager.

    Args:
        codex: the ``codex`` executable.
        cwd: the working directory Codex resolves project config from.
        env: its environment (``CODEX_HOME``, ``HOME``); default ours.
        timeout: seconds for the whole exchange.
    """

    def __init__(
        self,
        codex: str,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.codex, self.cwd, self.env = codex, cwd, env
        self.deadline = time.monotonic() + timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._next_id = 0

    def __enter__(self) -> AppServer:
        try:
            self._proc = subprocess.Popen(
                [self.codex, "app-server"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise UserError(f"cannot run {self.codex} app-server: {exc.strerror}") from exc
        self.call("initialize", {"clientInfo": {"name": "switchboard", "version": "1"}})
        self._send({"method": "initialized"})
        return self

    def __exit__(self, *exc_info: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message).encode() + b"\n")
            self._proc.stdin.flush()
        except OSError as exc:
            raise UserError("codex app-server exited early") from exc

    def _line(self) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = self.deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise UserError("codex app-server did not answer in time")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise UserError("codex app-server exited early")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """One request; its result (notifications in between are skipped).

        Raises:
            UserError: Codex answered with an error, exited or did not answer in time.
        """
        self._next_id += 1
        request_id = self._next_id
        self._send({"id": request_id, "method": method, "params": params})
        while True:
            try:
                message = json.loads(self._line())
            except ValueError:
                continue
            if not isinstance(message, dict) or message.get("id") != request_id:
                continue
            if "error" in message:
                error = message["error"]
                text = error.get("message") if isinstance(error, dict) else error
                raise UserError(f"codex app-server {method}: {text}")
            return message.get("result")


def event_word(event: str) -> str:
    """Codex's name for a hooks.json event in a hook key: ``PostToolUse`` -> ``post_tool_use``."""
    return _EVENT_WORD.sub("_", event).lower()


def our_hooks(server: AppServer, cwd: Path) -> list[Hook]:
    """Our hooks (their command runs ``switchboard hook codex ...``) as Codex lists them."""
    result = server.call("hooks/list", {"cwds": [str(cwd)]})
    found = []
    for entry in result.get("data", []) if isinstance(result, dict) else []:
        for hook in entry.get("hooks", []):
            if not is_ours(hook.get("command")):
                continue
            found.append(
                Hook(
                    key=str(hook["key"]),
                    event=str(hook.get("eventName", "")),
                    source=str(hook.get("source", "")),
                    source_path=str(hook.get("sourcePath", "")),
                    current_hash=str(hook.get("currentHash", "")),
                    trust=str(hook.get("trustStatus", "")),
                )
            )
    return found


def trust_hooks(server: AppServer, hooks: list[Hook]) -> None:
    """Record Codex's trust of ``hooks`` at their current hash, in the user's config.toml."""
    state = {h.key: {"trusted_hash": h.current_hash} for h in hooks}
    if state:
        edit = {"keyPath": "hooks.state", "value": state, "mergeStrategy": "upsert"}
        server.call("config/batchWrite", {"edits": [edit]})


def project_root(path: Path) -> Path:
    """The project Codex sees for ``path``: the nearest folder holding ``.git`` (else ``path``)."""
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return path
