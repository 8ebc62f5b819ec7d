"""A real daemon runs its features' reactions: in the receive transaction, and after commit.

A feature added to the table (as spawn or files will be) gets its methods served and its
reactions run without a line of ``service.py`` changing.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import load_settings
from switchboard.daemon.client import AsyncClient
from switchboard.daemon.context import Context
from switchboard.daemon.features import FEATURES
from switchboard.daemon.params import AgentParams
from switchboard.daemon.registry import Feature, Registry, after_commit, in_txn
from switchboard.daemon.service import Daemon
from switchboard.events import Body, Event, StatusChanged

REMOTE = "b" * 26
TS = "2030-01-01T00:00:00.000Z"


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))  # short: a unix socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Seen:
    """What the test feature's reactions saw."""

    def __init__(self, ctx: Context) -> None:
        self.in_txn: list[str] = []
        self.after: list[str] = []
        self.stored = asyncio.Event()


def _answer(
    ctx: Context, conn: sqlite3.Connection, stored: list[tuple[int, Event]]
) -> list[tuple[str, Body]]:
    ctx.part(Seen).in_txn += [event.type for _, event in stored]
    return [("", StatusChanged(status="idle", reason="seen a remote status"))]


def _after(ctx: Context, stored: list[tuple[int, Event]]) -> None:
    seen = ctx.part(Seen)
    seen.after += [event.type for _, event in stored]
    seen.stored.set()


async def _seen(ctx: Context, p: AgentParams) -> dict[str, Any]:
    seen = ctx.part(Seen)
    return {"in_txn": seen.in_txn, "after": seen.after, "agent": p.agent}


TEST_FEATURE = Feature(
    "test",
    methods={"test.seen": _seen},
    reactions=[in_txn(_answer, "status_changed"), after_commit(_after, "status_changed")],
)


def _remote(seq: int, type_: str, agent: str, data: dict[str, Any]) -> Event:
    return Event(origin=REMOTE, seq=seq, ts=TS, type=type_, agent=agent, data=data)


def test_daemon_runs_feature_reactions_in_the_receive_transaction_and_after(home: Path) -> None:
    """A received message to a local agent gets its delivered receipt in the transaction that
    stores it; a feature from the table reacts in that transaction and after the commit, and
    its method is served on the socket."""

    async def scenario() -> tuple[Any, Any, Any, str]:
        daemon = Daemon(load_settings(env={}, home=home))
        daemon.registry = Registry([*FEATURES, TEST_FEATURE])
        ready = asyncio.Event()
        serving = asyncio.create_task(daemon.serve(ready.set))
        await asyncio.wait_for(ready.wait(), 10)
        try:
            await daemon.log.append("nova", StatusChanged(status="active"))
            posted = _remote(
                1, "message_posted", "luna",
                {"to": ["@nova"], "recipients": [f"nova:{daemon.device_id}"], "text": "hi"},
            )  # fmt: skip
            received = await daemon.log.receive([posted])
            status = await daemon.log.receive([_remote(2, "status_changed", "luna", {
                "status": "busy"})])  # fmt: skip
            await asyncio.wait_for(daemon.part(Seen).stored.wait(), 10)
            async with AsyncClient(daemon.settings.socket_path) as client:
                served = await client.call("test.seen", {"agent": "nova"})
            return received, status, served, daemon.device_id
        finally:
            daemon.shutdown()
            await serving

    received, status, served, device = asyncio.run(scenario())
    [(_, receipt)] = received.reactions
    assert receipt.type == "message_delivered"
    assert receipt.data == {"message": f"{REMOTE}/1", "recipients": [f"nova:{device}"]}
    [(_, answered)] = status.reactions  # the test feature's answer, in the same transaction
    assert (answered.type, answered.data["status"]) == ("status_changed", "idle")
    # in_txn saw only the received status; after_commit saw the local one, then both of those
    assert served["in_txn"] == ["status_changed"]
    assert served["after"] == ["status_changed", "status_changed", "status_changed"]
    assert served["agent"] == "nova"
