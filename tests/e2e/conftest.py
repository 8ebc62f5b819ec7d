"""Fixtures for user-surface tests: an event loop in a thread, API servers on real unix sockets,
a fake daemon with canned DESIGN.md §5 results, and short socket paths."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from switchboard.config import Settings, load_settings
from switchboard.daemon import process
from switchboard.daemon.api import ApiServer
from switchboard.errors import NotFound

T = TypeVar("T")

# Slow machines set SWITCHBOARD_TEST_TIMEOUT_FACTOR to stretch every timeout at once.
TIMEOUT = 10.0 * float(os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1"))
FAKE_DAEMON = Path(__file__).with_name("fake_daemon.py")


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Yield (path, parser, help) for every command and command group of ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), sub, helps.get(name)
                yield from command_paths(sub, (*prefix, name))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path: unix socket paths are limited to ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class LoopThread:
    """An event loop running in a thread, so sync code (CLI, ``Client``) can run in the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> None:
        """Schedule ``fn`` on the loop."""
        self.loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """An event loop in a background thread."""
    runner = LoopThread()
    yield runner
    runner.close()


@pytest.fixture
def serve(loop_thread: LoopThread, short_tmp: Path) -> Iterator[Callable[..., ApiServer]]:
    """Return ``serve(handlers, path=None, **kw)``: an ``ApiServer`` started on the loop thread."""
    servers: list[ApiServer] = []

    def start(handlers: object, path: Path | None = None, **kwargs: Any) -> ApiServer:
        server = ApiServer(handlers, path or short_tmp / "api.sock", **kwargs)
        loop_thread.run(server.start())
        servers.append(server)
        return server

    yield start
    for server in servers:
        loop_thread.run(server.aclose())


class ApiHandlers:
    """A small real handler object: echo, raise, block, stream."""

    def __init__(self) -> None:
        self.stream_closed = threading.Event()
        self.release: asyncio.Event | None = None
        self.entered = threading.Event()

    async def ping(self, params: dict[str, Any]) -> Any:
        return {"pong": True}

    async def send(self, params: dict[str, Any]) -> Any:
        return {"echo": params}

    async def status(self, params: dict[str, Any]) -> Any:
        raise NotFound("unknown agent @ghost")

    async def agents(self, params: dict[str, Any]) -> Any:
        raise RuntimeError("secret detail")

    async def invite(self, params: dict[str, Any]) -> Any:
        raise ConnectionRefusedError("the handler's own connection failed")

    async def register(self, params: dict[str, Any]) -> Any:
        return object()  # not JSON-able

    async def inbox(self, params: dict[str, Any]) -> Any:
        self.release = asyncio.Event()
        self.entered.set()
        await self.release.wait()
        return "released"

    async def events_follow(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        try:
            for i in range(params.get("count", 0)):
                yield {"n": i}
            if params.get("bad_item"):
                yield object()  # not JSON-able
            if params.get("fail"):
                raise NotFound("stream target vanished")
            if params.get("forever"):
                await asyncio.Event().wait()
        finally:
            self.stream_closed.set()

    def helper(self) -> str:
        """Not an API method: must not be reachable from the socket."""
        return "private"


# -- a fake daemon for CLI tests -----------------------------------------------------------------

AGENT = {
    "address": "nova:ABCD",
    "name": "nova",
    "device": "ABCD",
    "local": False,
    "status": "active",
    "harness": "claude",
    "cwd": "/src/app",
    "summary": "",
    "last_seen": "2024-05-01T10:12:11Z",
}
EVENT = {
    "id": 42,
    "ts": "2024-05-01T10:12:11Z",
    "type": "message_posted",
    "agent": "luna:BOXE",
    "device": "BOXE",
    "data": {"text": "hi"},
}
MESSAGE = {
    "id": 7,
    "ts": "2024-05-01T10:12:11Z",
    "from": "luna:BOXE",
    "to": ["@nova:ABCD"],
    "text": "first line\nsecond line",
    "thread": None,
}
GROUP = {
    "id": "g1",
    "name": "team",
    "link": {"url": "ws://127.0.0.1:7787", "state": "connected", "lag": 0, "last_push": None},
}
LINK = {
    "group": "g1",
    "name": "team",
    "url": "ws://127.0.0.1:7787",
    "state": "connected",
    "lag": 0,
    "last_push": None,
    "enabled": True,
}
INVITE = "sbinv1.TOKEN"


class FakeDaemon:
    """API handlers with canned results in DESIGN.md §5 shapes; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.follow_forever = False

    def _record(self, method: str, params: dict[str, Any]) -> None:
        self.calls.append((method, params))

    async def init(self, params: dict[str, Any]) -> Any:
        self._record("init", params)
        return {"id": "wfabbjsbct6qjam44mzpaipyo3", "short": "BOXE", "name": "laptop"}

    async def status(self, params: dict[str, Any]) -> Any:
        self._record("status", params)
        return {
            "device": {"id": "wfabbjsbct6qjam44mzpaipyo3", "short": "BOXE", "name": "laptop"},
            "daemon": {"running": True, "pid": 123},
            "groups": [GROUP],
            "agents": [AGENT],
        }

    async def agents(self, params: dict[str, Any]) -> Any:
        self._record("agents", params)
        return [AGENT]

    async def send(self, params: dict[str, Any]) -> Any:
        self._record("send", params)
        if params.get("to") == ["@ghost"]:
            raise NotFound("unknown agent @ghost")
        if params.get("to") == ["@boom"]:
            raise RuntimeError("secret detail")
        return {
            "id": 43,
            "result": "queued",
            "recipients": [
                {"address": "nova:ABCD", "state": "delivered"},
                {"address": "luna:EFGH", "state": "queued"},
            ],
        }

    async def agent_hook(self, params: dict[str, Any]) -> Any:
        self._record("agent.hook", params)
        return {"agent": "luna:BOXE", "text": "[switchboard] nova:ABCD says hi"}

    async def inbox(self, params: dict[str, Any]) -> Any:
        self._record("inbox", params)
        return [MESSAGE]

    async def events(self, params: dict[str, Any]) -> Any:
        self._record("events", params)
        return [EVENT]

    async def events_follow(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        self._record("events.follow", params)
        yield {**EVENT, "id": 43}
        yield {**EVENT, "id": 44}
        if self.follow_forever:
            await asyncio.Event().wait()

    async def group_create(self, params: dict[str, Any]) -> Any:
        self._record("group.create", params)
        return {"group": GROUP, "invite": INVITE}

    async def invite(self, params: dict[str, Any]) -> Any:
        self._record("invite", params)
        return {"invite": INVITE}

    async def join(self, params: dict[str, Any]) -> Any:
        self._record("join", params)
        return {"group": GROUP}

    async def link_set(self, params: dict[str, Any]) -> Any:
        self._record("link.set", params)
        return [{**LINK, "enabled": params["on"]}]

    async def link_status(self, params: dict[str, Any]) -> Any:
        self._record("link.status", params)
        return [LINK]


@pytest.fixture
def fake_daemon(
    serve: Callable[..., ApiServer], short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeDaemon:
    """A ``FakeDaemon`` serving the socket of home ``short_tmp`` (set as SWITCHBOARD_HOME)."""
    monkeypatch.setenv("SWITCHBOARD_HOME", str(short_tmp))
    monkeypatch.delenv("SWITCHBOARD_AGENT", raising=False)
    daemon = FakeDaemon()
    serve(daemon, load_settings(home=short_tmp).socket_path)
    return daemon


# -- background processes ------------------------------------------------------------------------


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    """Settings for the home ``short_tmp``."""
    return load_settings(env={}, home=short_tmp)


@pytest.fixture
def fake_spawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Return ``use(*args, script=None)``: make ``start_background`` run a stand-in daemon.

    By default the stand-in is ``fake_daemon.py`` with ``args``; ``script`` replaces it with
    ``python -c script``. Every process started is killed at the end of the test.
    """
    started: list[int] = []
    real_start = process.start_background

    def use(*args: str, script: str | None = None) -> None:
        def command(settings: Settings) -> list[str]:
            if script is not None:
                return [sys.executable, "-c", script]
            return [sys.executable, str(FAKE_DAEMON), "--home", str(settings.home), *args]

        monkeypatch.setattr(process, "_daemon_command", command)

    def start(settings: Settings) -> int:
        pid = real_start(settings)
        started.append(pid)
        return pid

    monkeypatch.setattr(process, "start_background", start)
    yield use
    for pid in started:
        if not process.has_exited(pid):
            os.kill(pid, signal.SIGKILL)
            process._children[pid].wait(TIMEOUT)
