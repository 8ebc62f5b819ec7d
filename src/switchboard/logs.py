"""Logging setup, an optional JSON formatter, and a filter that redacts secrets.

Debug lines use one-character prefixes: ``<`` frame in, ``>`` frame out, ``=`` state change,
``x`` closing, ``!`` error. INFO logs one line per peer connect and disconnect.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Final

# Invite tokens carry group secrets; long hex or base64 runs may be keys. Neither belongs in a log.
_SECRET_PATTERNS: Final = (
    re.compile(r"sb1\.[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\b[0-9a-fA-F]{64,}\b"),
)


def redact(text: str) -> str:
    """Replace anything that looks like an invite or key material with ``[redacted]``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Redact secrets from every record's rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redacted, and drop the arguments."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (and exc when present)."""

    def format(self, record: logging.LogRecord) -> str:
        """Format a record as JSON."""
        data = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Log to stderr (never stdout: stdout belongs to command output and MCP)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("switchboard")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
