"""Fixtures for the L0 tests: sessions paired in memory (helpers live in ``pairing.py``)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from pairing import LogHolder, Network, SessionPair

# Property tests are about outcomes, not speed: on a loaded 2-core machine one example can take
# longer than Hypothesis's 200 ms default deadline (speed is measured by bench/, never asserted).
settings.register_profile("switchboard", deadline=None)
settings.load_profile("switchboard")


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
