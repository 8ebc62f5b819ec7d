"""``mcp``: run the MCP server on stdio, or on streamable HTTP with ``--http``."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def mcp(args: argparse.Namespace, settings: Settings) -> int:
    """Serve MCP until the client hangs up (stdio) or Ctrl-C (HTTP)."""
    import anyio  # noqa: PLC0415 - the MCP stack is imported only by this command

    from switchboard.daemon.autostart import connect  # noqa: PLC0415
    from switchboard.logs import setup_logging  # noqa: PLC0415
    from switchboard.mcp import server  # noqa: PLC0415

    setup_logging(settings.log_level if settings.log_level != "INFO" else "WARNING")
    connect(settings).close()  # start the daemon now rather than at the first tool call
    agent = settings.agent or ""
    if args.http:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server ends
            server.serve_http(settings, host=args.host, port=args.port, agent=agent)
        return 0
    anyio.run(lambda: server.serve_stdio(settings, agent=agent))
    sys.stdout.flush()
    return 0
