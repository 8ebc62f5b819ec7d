"""Crash safety: a writer killed with SIGKILL mid-batch leaves only whole batches behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from store_helpers import ME

from switchboard.store.db import Database
from switchboard.store.log import EventLog

BATCH = 2000
# Appends batches of BATCH events forever, printing each batch number once it has committed.
WRITER = """
import sys
from switchboard.events import FileEdited
from switchboard.store.db import Database
from switchboard.store.log import EventLog

path, device, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = EventLog(Database(path), device)
number = log.vector().get(device, 0) // size
while True:
    number += 1
    log.append_sync([("luna", FileEdited(path=f"{number}/{i}")) for i in range(size)])
    print(number, flush=True)
"""


def _run_and_kill(path: Path, after_batches: int) -> int:
    """Run a writer until it reports ``after_batches`` batches, kill -9 it, return the last."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), ME, str(BATCH)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    reported: list[int] = []
    while len(reported) < after_batches:
        line = proc.stdout.readline()
        assert line, f"writer exited early with {proc.wait()}"
        reported.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return reported[-1]


def _check_whole_batches(path: Path, reported: int) -> int:
    with Database(path) as db:
        log = EventLog(db, ME)
        rows = db.reader().execute("SELECT seq, data FROM events ORDER BY id").fetchall()
        vector = log.vector()
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(rows) + 1)), "seqs are not contiguous"
    assert len(rows) % BATCH == 0, f"{len(rows)} events is not a whole number of batches"
    batches = len(rows) // BATCH
    assert batches >= reported, "a batch reported as committed is missing"
    for seq, data in rows:
        assert data.startswith(f'{{"path":"{(seq - 1) // BATCH + 1}/'), f"event {seq} misplaced"
    assert vector == ({ME: len(rows)} if rows else {})
    return batches


def test_crash_writer_killed_mid_batch_leaves_whole_batches(store_path: Path) -> None:
    """After repeated kill -9 of a writer, every stored batch is whole and seqs are contiguous."""
    Database(store_path).close()
    held = 0
    for _ in range(3):
        reported = _run_and_kill(store_path, after_batches=3)
        assert reported >= held + 3
        held = _check_whole_batches(store_path, reported)
