"""Fixtures for the L1 store tests: real SQLite files in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import ME

from switchboard.store.db import DB_FILENAME, Database
from switchboard.store.log import EventLog


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where a test's database file lives (not created yet)."""
    return tmp_path / DB_FILENAME


@pytest.fixture
def fresh_store(store_path: Path) -> Iterator[EventLog]:
    """An empty, migrated event log of device ``ME``, closed after the test."""
    db = Database(store_path)
    try:
        yield EventLog(db, ME)
    finally:
        db.close()
