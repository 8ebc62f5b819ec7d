"""Agents' conversations read from their harnesses' own transcript files (pure, no daemon).

``shapes`` holds the typed result (``Exchange``, ``Message``, ``ToolCall``, ``Transcript``),
``formats`` one reader per harness format (checked against the pinned harness versions, with
fixtures from real runs in tests/fixtures/transcripts), ``locate`` where each harness keeps
the file of a session. docs/transcripts.md describes them.
"""
