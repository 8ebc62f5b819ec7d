"""Fixtures for the L0 tests: sessions paired in memory (helpers live in ``pairing.py``)."""

from __future__ import annotations

import pytest
from pairing import LogHolder, Network, SessionPair


@pytest.fixture
def pair() -> SessionPair:
    """A device and a relay whose handshake has completed over a faultless link."""
    pair = SessionPair()
    pair.pump()
    assert pair.client.is_open and pair.server.is_open
    return pair


@pytest.fixture
def network() -> Network:
    """An empty network with its clock at zero."""
    return Network()


@pytest.fixture
def relay() -> LogHolder:
    """A relay that accepts the test group."""
    return LogHolder.relay()
