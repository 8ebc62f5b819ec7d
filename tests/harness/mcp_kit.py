"""Helpers for MCP tests: the official SDK client driving a real ``switchboard mcp`` process."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from harness_kit import PY, timeout
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]], seconds: float = 60.0) -> T:
    """Run an async test body on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        with anyio.fail_after(timeout(seconds)):
            return await fn()

    return anyio.run(bounded)


@asynccontextmanager
async def mcp_session(env: dict[str, str], cwd: str | None = None) -> AsyncIterator[ClientSession]:
    """A ``ClientSession`` over stdio to ``switchboard mcp`` started with ``env`` (in ``cwd``)."""
    params = StdioServerParameters(command=PY, args=["-m", "switchboard", "mcp"], env=env, cwd=cwd)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


class Result:
    """A tool result: error flag, the first content (parsed as JSON if it is), and the rest."""

    def __init__(self, raw: Any) -> None:
        self.is_error = bool(raw.is_error)
        texts = [c.text for c in raw.content]
        self.text = texts[0] if texts else ""
        try:
            self.value: Any = json.loads(self.text)
        except ValueError:
            self.value = None
        self.extra = texts[1:]

    @property
    def unread(self) -> str:
        """The unread-messages block riding on the result, or ``""``."""
        return "\n".join(self.extra)


async def call(session: ClientSession, tool: str, **args: Any) -> Result:
    """Call one tool and wrap its result."""
    return Result(await session.call_tool(tool, args))


class StdioProbe:
    """A raw JSON-RPC client over a ``switchboard mcp`` process's stdio.

    The SDK's client does not hand custom notifications (``notifications/claude/channel``) to
    its handlers, so channel pushes are read straight off the wire here (by a reader thread,
    so a read can give up).
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "switchboard", "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def send(self, message: dict[str, Any]) -> None:
        """Write one JSON-RPC message."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        self.proc.stdin.flush()

    def read_until(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 60.0
    ) -> dict[str, Any]:
        """Read messages until one matches ``predicate``; return it (fail after ``within``
        seconds, stretched on a slow machine)."""
        try:
            while True:
                line = self._lines.get(timeout=timeout(within))
                assert line, "the server closed stdout"
                message: dict[str, Any] = json.loads(line)
                if predicate(message):
                    return message
        except queue.Empty:
            raise AssertionError(f"no matching message in {within:g} s") from None

    def close(self) -> None:
        """Hang up (the server exits at end of input)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout(20))
