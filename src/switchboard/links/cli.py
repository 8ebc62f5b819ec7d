"""Command-line flags for broker links (``group create`` and ``join``), kept light to import.

Secrets never go on a command line (``ps`` shows them to every user): the password comes from
a file (``--password-file``) or the ``SWITCHBOARD_BROKER_PASSWORD`` environment variable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from switchboard.errors import UserError

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    from typing import Final

PASSWORD_ENV: Final = "SWITCHBOARD_BROKER_PASSWORD"  # noqa: S105 - a variable name, not a password


def add_link_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--username``, ``--password-file`` and the ``--tls-*`` files to a command."""
    parser.add_argument("--username", metavar="U", help="broker user name (MQTT, NATS)")
    parser.add_argument(
        "--password-file",
        metavar="F",
        help=f"file holding the broker password (or set {PASSWORD_ENV})",
    )
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificates to trust (turns TLS on)")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", metavar="FILE", help="the client certificate's key")
    parser.add_argument("--nats-creds", metavar="FILE", help="NATS .creds file (JWT + nkey)")


def options_from_args(args: argparse.Namespace) -> dict[str, str] | None:
    """Return the link options the flags (and the password variable) give, or ``None``.

    Raises:
        UserError: the password file cannot be read.
    """
    options: dict[str, str] = {}
    if getattr(args, "username", None):
        options["username"] = args.username
    password = os.environ.get(PASSWORD_ENV)
    if getattr(args, "password_file", None):
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as exc:
            raise UserError(f"cannot read --password-file: {exc.strerror}") from exc
    if password:
        options["password"] = password
    for flag, key in (("tls_ca", "tls_ca"), ("tls_cert", "tls_cert"), ("tls_key", "tls_key"),
                      ("nats_creds", "creds")):  # fmt: skip
        value = getattr(args, flag, None)
        if value:
            options[key] = str(Path(value).expanduser().resolve())
    return options or None
