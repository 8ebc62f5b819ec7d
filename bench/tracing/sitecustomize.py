"""Bench-only per-hop trace: loaded as ``sitecustomize`` by processes that ``bench/run.py`` and
``bench/hooks.py`` start with ``bench/tracing`` on ``PYTHONPATH`` and ``SWITCHBOARD_TRACE_DIR``
set. Nothing in ``src`` knows of it, so it costs nothing when off.

It wraps a few methods at the hops of a message (API request in, commit, link read, WebSocket
send and receive, receive commit, stream item out) and appends ``name t_ns size`` lines, one
``os.write`` each, to ``<dir>/<role>-<pid>.trace``. ``time.perf_counter_ns`` is
CLOCK_MONOTONIC on Linux: one clock for every process on the machine, so hops compare across
processes (see ``bench/tracing/legs.py``).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

_DIR = os.environ.get("SWITCHBOARD_TRACE_DIR")


def _install() -> None:
    assert _DIR is not None
    role = os.path.basename(os.environ.get("SWITCHBOARD_HOME", "x").rstrip("/")) or "x"
    fd = os.open(
        os.path.join(_DIR, f"{role}-{os.getpid()}.trace"),
        os.O_CREAT | os.O_WRONLY | os.O_APPEND,
        0o600,
    )
    clock = time.perf_counter_ns

    def mark(name: str, size: int = 0) -> None:
        os.write(fd, f"{name} {clock()} {size}\n".encode())

    def around(cls: Any, attr: str, name: str, size: Any = None, after: bool = True) -> None:
        fn = getattr(cls, attr)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not after:
                mark(name, size(args, None) if size else 0)
            result = await fn(*args, **kwargs)
            if after:
                mark(name, size(args, result) if size else 0)
            return result

        setattr(cls, attr, wrapper)

    from switchboard.daemon import api  # noqa: PLC0415 - only when tracing
    from switchboard.store import log  # noqa: PLC0415 - only when tracing
    from switchboard.transports import websocket  # noqa: PLC0415 - only when tracing

    ws = websocket.WebSocketTransport
    around(ws, "send", "ws_send", lambda a, r: len(a[1]), after=False)
    around(ws, "send_many", "ws_send", lambda a, r: sum(map(len, a[1])), after=False)
    around(ws, "receive", "ws_recv", lambda a, r: len(r))
    from switchboard.transports import wsserver  # noqa: PLC0415 - only when tracing

    server = wsserver.ServerTransport  # the relay's side; its send() is send_many([frame])
    around(server, "send_many", "ws_send", lambda a, r: sum(map(len, a[1])), after=False)
    around(server, "receive", "ws_recv", lambda a, r: len(r))
    around(log.EventLog, "append_many", "commit", lambda a, r: len(r))
    around(log.EventLog, "receive", "receive_commit", lambda a, r: len(a[1]))
    around(log.EventLog, "append_many", "append_in", after=False)
    around(api.ApiServer, "_handle_line", "api_in", lambda a, r: len(a[2]), after=False)
    around(api._Connection, "send", "api_out", lambda a, r: 1 if "item" in a[1] else 0, False)

    try:
        from switchboard.mcp import server  # noqa: PLC0415 - only when tracing
    except ImportError:  # the SDK is not installed: no MCP server runs here
        pass
    else:
        around(server.SwitchboardMCP, "_call_tool", "mcp_in", after=False)
        around(server.SwitchboardMCP, "_call_tool", "mcp_out")
        from switchboard.daemon import client  # noqa: PLC0415 - only when tracing

        around(client.AsyncClient, "call", "bridge_call", after=False)
        around(client.AsyncClient, "call", "bridge_back")
        _trace_stdio(mark)

    since = log.EventLog.since

    @functools.wraps(since)
    def traced_since(self: Any, vector: Any, limit: int) -> Any:
        found = since(self, vector, limit)
        if found:
            mark("link_read", len(found))
        return found

    log.EventLog.since = traced_since  # type: ignore[method-assign]


def _trace_stdio(mark: Any) -> None:
    """The MCP server's stdio lines: read off stdin, written and flushed to stdout (these run
    in the SDK's worker threads)."""
    from mcp.server import stdio  # noqa: PLC0415 - only when tracing

    cls = stdio._UnownedTextWrapper
    readline, write, flush = cls.readline, cls.write, cls.flush

    def traced_readline(self: Any, *args: Any) -> Any:
        line = readline(self, *args)
        mark("mcp_line_in", len(line))
        return line

    def traced_write(self: Any, text: Any) -> Any:
        mark("mcp_line_out", len(text))
        return write(self, text)

    def traced_flush(self: Any) -> Any:
        result = flush(self)
        mark("mcp_flushed")
        return result

    cls.readline, cls.write, cls.flush = traced_readline, traced_write, traced_flush  # type: ignore[method-assign,assignment]
    try:  # our own stdio, served from the loop (mcp/pipes.py), when the SDK's is not used
        from switchboard.mcp import pipes  # noqa: PLC0415 - only when tracing
    except ImportError:
        return
    reader, writer = pipes.LineReader, pipes.LineWriter
    anext_line, write_line = reader.__anext__, writer.write

    async def traced_anext(self: Any) -> Any:
        line = await anext_line(self)
        mark("mcp_line_in", len(line))
        return line

    async def traced_write_line(self: Any, text: str) -> None:
        mark("mcp_line_out", len(text))
        await write_line(self, text)
        mark("mcp_flushed")

    reader.__anext__, writer.write = traced_anext, traced_write_line  # type: ignore[method-assign]


if _DIR:
    _install()


def _profile() -> None:
    """``SWITCHBOARD_TRACE_PROFILE=<dir>``: cProfile the whole process, dumped at exit."""
    import atexit  # noqa: PLC0415 - only when tracing
    import cProfile  # noqa: PLC0415 - only when tracing

    profile = cProfile.Profile()
    role = os.path.basename(os.environ.get("SWITCHBOARD_HOME", "x").rstrip("/")) or "x"
    out = os.path.join(os.environ["SWITCHBOARD_TRACE_PROFILE"], f"{role}-{os.getpid()}.prof")
    atexit.register(lambda: (profile.disable(), profile.dump_stats(out)))
    profile.enable()


if os.environ.get("SWITCHBOARD_TRACE_PROFILE"):
    _profile()
