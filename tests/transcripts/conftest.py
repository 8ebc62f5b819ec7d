"""Transcript tests: the fixture transcripts, and real daemons (tests/integration/cluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordination"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
