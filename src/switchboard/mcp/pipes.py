"""The MCP server's stdin and stdout, served from the event loop rather than worker threads.

The SDK's ``stdio_server`` reads stdin and writes stdout through anyio's ``to_thread``: each
message in pays a thread hop (``readline``), each message out two (``write``, ``flush``), and on
a busy machine each hop waits for a core and the GIL; that was most of what a tool call cost
beyond the daemon's answer (bench/hooks.py, part 2). When stdin and stdout are pipes or
sockets, which is how a harness starts us (Python's ``subprocess`` gives pipes, Node's a
socketpair), ``claim_stdio`` hands ``stdio_server`` a ``LineReader`` and a ``LineWriter`` that
wait for readiness in the loop's selector and read and write without blocking. Anything else (a
terminal, a file) gets ``None``: the SDK's own streams serve it, as before.

Non-blocking without touching what others share: a pipe is reopened through
``/proc/self/fd`` (a file description of our own, so ``O_NONBLOCK`` stays ours); a socket is
read and written with ``MSG_DONTWAIT``. The bytes on the wire are the SDK's: one JSON-RPC
message per line, UTF-8.

As the SDK does while it serves, fd 0 reads ``/dev/null`` and fd 1 writes to stderr, so a stray
``print`` or a child's output never lands in the protocol stream; both are put back on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Final

# How much one read takes off the pipe at most.
READ_SIZE: Final = 256 * 1024


class PipeEnd:
    """One standard stream (fd 0 or 1), open for non-blocking use from the loop."""

    def __init__(self, fd: int, sock: socket.socket | None) -> None:
        self.fd = fd
        self._sock = sock

    @classmethod
    def open(cls, fd: int, writing: bool) -> PipeEnd | None:
        """The stream on ``fd`` if it is a pipe or a socket we can use so, else ``None``."""
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISSOCK(mode):
                copy = os.dup(fd)
                try:
                    sock = socket.socket(fileno=copy)
                except OSError:
                    os.close(copy)
                    raise
                return cls(sock.fileno(), sock)
            if stat.S_ISFIFO(mode) and sys.platform == "linux":
                flags = (os.O_WRONLY if writing else os.O_RDONLY) | os.O_NONBLOCK | os.O_CLOEXEC
                return cls(os.open(f"/proc/self/fd/{fd}", flags), None)
        except OSError:
            pass
        return None

    def read(self, size: int) -> bytes:
        """What is there (``b""`` at the end); ``BlockingIOError`` if nothing is yet."""
        if self._sock is not None:
            return self._sock.recv(size, socket.MSG_DONTWAIT)
        return os.read(self.fd, size)

    def write(self, data: memoryview) -> int:
        """Write what fits now; ``BlockingIOError`` if nothing does."""
        if self._sock is not None:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        return os.write(self.fd, data)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)


async def _ready(fd: int, writing: bool) -> None:
    """Wait until ``fd`` is readable (or writable)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class LineReader:
    """stdin as ``stdio_server`` reads it: ``async for line in reader`` (each ends in ``\\n``,
    but for a last one cut short by the end of input)."""

    def __init__(self, end: PipeEnd) -> None:
        self._end = end
        self._buffer = bytearray()
        self._eof = False

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0 or (self._eof and self._buffer):
                size = newline + 1 if newline >= 0 else len(self._buffer)
                line = bytes(self._buffer[:size])
                del self._buffer[:size]
                return line.decode("utf-8", errors="replace")
            if self._eof:
                raise StopAsyncIteration
            try:
                data = self._end.read(READ_SIZE)
            except BlockingIOError:
                await _ready(self._end.fd, writing=False)
                continue
            except ConnectionResetError:  # the client went away: the end of input
                data = b""
            self._eof = not data
            self._buffer += data


class LineWriter:
    """stdout as ``stdio_server`` writes it: ``write`` sends the whole text before it returns,
    so ``flush`` has nothing left to do."""

    def __init__(self, end: PipeEnd) -> None:
        self._end = end

    async def write(self, text: str) -> None:
        view = memoryview(text.encode("utf-8"))
        while view:
            with contextlib.suppress(BlockingIOError):
                view = view[self._end.write(view) :]
            if view:  # the client is behind: wait until the pipe takes more
                await _ready(self._end.fd, writing=True)

    async def flush(self) -> None:
        return None


def _divert(fd: int, target: Callable[[], int]) -> int | None:
    """Point ``fd`` where ``target()`` opens; return a copy of what it was, or ``None`` (left
    as it was)."""
    try:
        saved = os.dup(fd)
    except OSError:
        return None
    try:
        opened = target()
        try:
            os.dup2(opened, fd)
        finally:
            os.close(opened)
    except OSError:
        os.close(saved)
        return None
    return saved


def _stderr() -> int:
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


@contextlib.contextmanager
def claim_stdio() -> Iterator[tuple[LineReader, LineWriter] | None]:
    """stdin and stdout for ``stdio_server`` served from the loop, or ``None`` (the SDK's)."""
    reading, writing = PipeEnd.open(0, writing=False), PipeEnd.open(1, writing=True)
    if reading is None or writing is None:
        for end in (reading, writing):
            if end is not None:
                end.close()
        yield None
        return
    sys.stdout.flush()
    saved = {0: _divert(0, lambda: os.open(os.devnull, os.O_RDONLY)), 1: _divert(1, _stderr)}
    try:
        yield LineReader(reading), LineWriter(writing)
    finally:
        for fd, copy in saved.items():
            if copy is not None:
                with contextlib.suppress(OSError):
                    os.dup2(copy, fd)
                os.close(copy)
        reading.close()
        writing.close()
