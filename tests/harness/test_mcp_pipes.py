"""mcp/pipes.py: the MCP server's stdio served from the event loop, over pipes and sockets."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from harness_kit import PY, Device, timeout

from switchboard.mcp import pipes


@contextlib.contextmanager
def connected(kind: str) -> Iterator[tuple[int, int]]:
    """A (read fd, write fd) pair: an OS pipe, or a socketpair as Node gives its children."""
    if kind == "pipe":
        r, w = os.pipe()
        try:
            yield r, w
        finally:
            for fd in (r, w):
                with contextlib.suppress(OSError):
                    os.close(fd)
    else:
        a, b = socket.socketpair()
        with a, b:
            yield a.fileno(), b.fileno()


def end_of_input(kind: str, w: int) -> None:
    if kind == "pipe":
        os.close(w)
    else:
        socket.socket(fileno=os.dup(w)).shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_lines_come_in_whole_the_last_one_cut_short(kind: str) -> None:
    """Lines split across writes come out whole, bad UTF-8 replaced; a line longer than one
    read comes out whole; a last line without its newline still comes out, then the end."""
    big = "x" * (pipes.READ_SIZE * 2 + 17)
    parts = [b'{"a": 1}\n{"b"', b": 2}\n\xff\n", big.encode() + b"\n", b"tail"]
    with connected(kind) as (r, w):
        end = pipes.PipeEnd.open(r, writing=False)
        assert end is not None

        async def body() -> list[str]:
            got: list[str] = []

            async def feed() -> None:
                os.set_blocking(w, False)
                for part in parts:
                    view = memoryview(part)
                    while view:
                        await anyio.wait_writable(w)
                        with contextlib.suppress(BlockingIOError):
                            view = view[os.write(w, view) :]
                end_of_input(kind, w)

            with anyio.fail_after(timeout(20)):
                async with anyio.create_task_group() as group:
                    group.start_soon(feed)
                    async for line in pipes.LineReader(end):
                        got.append(line)
            return got

        try:
            got = anyio.run(body)
        finally:
            end.close()
    assert got == ['{"a": 1}\n', '{"b": 2}\n', "\ufffd\n", big + "\n", "tail"]


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_a_line_bigger_than_the_pipe_waits_for_the_reader(kind: str) -> None:
    """A message bigger than the pipe's buffer goes out whole and in order while the client
    reads slowly, and the loop runs other tasks meanwhile."""
    text = "".join(f"{i:08d}" for i in range(200_000)) + "\n"  # 1.6 MB, one line
    received = bytearray()
    with connected(kind) as (r, w):
        end = pipes.PipeEnd.open(w, writing=True)
        assert end is not None
        os.set_blocking(r, False)

        async def body() -> int:
            others = 0

            async def drain() -> None:
                nonlocal others
                while len(received) < len(text):
                    await anyio.wait_readable(r)
                    others += 1
                    with contextlib.suppress(BlockingIOError):
                        received.extend(os.read(r, 4096))

            with anyio.fail_after(timeout(30)):
                async with anyio.create_task_group() as group:
                    group.start_soon(drain)
                    writer = pipes.LineWriter(end)
                    await writer.write(text)
                    await writer.flush()
            return others

        try:
            others = anyio.run(body)
        finally:
            end.close()
    assert received.decode() == text
    assert others > 1  # the reader ran while the write was under way


def test_a_file_or_a_closed_fd_is_left_to_the_sdk() -> None:
    with tempfile.TemporaryFile() as f:
        assert pipes.PipeEnd.open(f.fileno(), writing=False) is None
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert pipes.PipeEnd.open(r, writing=False) is None


CLAIM = textwrap.dedent(
    """
    import anyio, sys
    from switchboard.mcp import pipes

    async def main():
        with pipes.claim_stdio() as streams:
            assert streams is not None, "pipes on fd 0 and 1 are claimed"
            reader, writer = streams
            print("stray print while serving", flush=True)  # fd 1 is stderr meanwhile
            line = await reader.__anext__()
            await writer.write("echo " + line)
            await writer.flush()
            assert sys.stdin.read() == "", "fd 0 reads /dev/null meanwhile"
        print("after serving", flush=True)  # fd 1 is the wire again

    anyio.run(main)
    """
)


def test_claim_stdio_diverts_stdin_and_stdout_while_serving_and_puts_them_back() -> None:
    done = subprocess.run(
        [PY, "-c", CLAIM],
        input=b"hello\nnot for sys.stdin\n",
        capture_output=True,
        timeout=timeout(30),
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"echo hello\nafter serving\n"
    assert b"stray print while serving" in done.stderr


def test_claim_stdio_leaves_a_file_to_the_sdk() -> None:
    script = "from switchboard.mcp import pipes\nwith pipes.claim_stdio() as s: print(s)"
    with tempfile.TemporaryFile() as stdin:
        done = subprocess.run(
            [PY, "-c", script],
            stdin=stdin,
            capture_output=True,
            timeout=timeout(30),
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    assert done.stdout == b"None\n"


INIT = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "probe", "version": "0"},
}
SESSION = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami"}},
]


def _answers(raw: bytes) -> dict[int, Any]:
    return {m["id"]: m for m in map(json.loads, raw.splitlines()) if "id" in m}


def test_the_server_over_a_socketpair_as_node_starts_it(device: Device) -> None:
    """Node's child_process gives its child a socketpair for stdin and stdout: the server
    answers over it (served from the loop) and exits when the client shuts its side."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = subprocess.Popen(
            [PY, "-m", "switchboard", "mcp"],
            stdin=theirs,
            stdout=theirs,
            stderr=subprocess.DEVNULL,
            env={**device.env, "SWITCHBOARD_AGENT": "luna"},
        )
        theirs.close()
        ours.settimeout(timeout(60))
        ours.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in SESSION))
        raw = b""
        while set(_answers(raw)) != {1, 2}:
            chunk = ours.recv(65536)
            assert chunk, f"the server closed the socket: {raw!r}"
            raw += chunk
        ours.shutdown(socket.SHUT_WR)
        assert proc.wait(timeout(20)) == 0
    whoami = json.loads(_answers(raw)[2]["result"]["content"][0]["text"])
    assert whoami["address"] == f"luna:{device.short}"


def test_the_server_reading_a_file_uses_the_sdks_streams(device: Device) -> None:
    """stdin from a file (no pipe, no socket): the SDK's own streams serve it, as before."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in SESSION))
        stdin.seek(0)
        done = subprocess.run(
            [PY, "-m", "switchboard", "mcp"],
            stdin=stdin,
            capture_output=True,
            timeout=timeout(60),
            check=True,
            env={**device.env, "SWITCHBOARD_AGENT": "luna"},
        )
    assert set(_answers(done.stdout)) == {1, 2}
