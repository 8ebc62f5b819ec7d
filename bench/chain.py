"""The durable path's floor as a chain of minimal processes (``bench/latency.py`` runs it).

Three Python asyncio processes do, per message, the least that Switchboard's path must:
``a`` reads a line from the measuring process over loopback TCP (the local API call), appends
it to a file and fdatasyncs it (the durable commit), sends it as one WebSocket message to
``relay``, which forwards it to ``b``, which writes it to the measuring process over TCP (the
follower). No store, no crypto, no JSON: what Python, asyncio and websockets cost on this
machine for the same hops.

Run as ``python bench/chain.py relay|b|a PORT [NEXT_PORT]``; each prints ``ready PORT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from switchboard import runloop


async def relay() -> None:
    peers: dict[str, ServerConnection] = {}

    async def handler(ws: ServerConnection) -> None:
        role = ws.request.path.strip("/") if ws.request else ""
        peers[role] = ws
        async for message in ws:
            await peers["b"].send(message)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        print(f"ready {port}", flush=True)
        await asyncio.Future()


async def b(relay_port: int) -> None:
    async with connect(f"ws://127.0.0.1:{relay_port}/b", compression=None) as ws:
        clients: list[asyncio.StreamWriter] = []

        async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.append(writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        async for message in ws:
            assert isinstance(message, bytes)
            for writer in clients:
                writer.write(message)
                await writer.drain()


async def a(relay_port: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    with tempfile.NamedTemporaryFile(prefix="chain-", dir=os.environ.get("CHAIN_DIR")) as log:
        async with connect(f"ws://127.0.0.1:{relay_port}/a", compression=None) as ws:

            async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
                while line := await reader.readline():
                    os.write(log.fileno(), line.ljust(4096))
                    sync(log.fileno())
                    await ws.send(line)
                    writer.write(b"ok\n")
                    await writer.drain()

            server = await asyncio.start_server(serve_client, "127.0.0.1", 0)
            print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
            await asyncio.Future()


def main() -> None:
    role, *ports = sys.argv[1:]
    # On the daemons' own event loop (uvloop where installed).
    if role == "relay":
        runloop.run(relay())
    elif role == "b":
        runloop.run(b(int(ports[0])))
    else:
        runloop.run(a(int(ports[0])))


if __name__ == "__main__":
    main()
