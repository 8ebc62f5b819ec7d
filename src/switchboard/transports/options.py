"""``LinkOptions``: how a broker link logs in and which TLS files it uses (a transport concern).

The options travel as JSON: stored beside the group (``store.local.set_group_link_options``),
carried by invites (``LinkOptions.for_invite``) and given to the local API. Secrets: the
password never reaches a log, an error message or a command line.
"""

from __future__ import annotations

from typing import Any

import msgspec

from switchboard.errors import UserError


class LinkOptions(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """How to authenticate to a broker. Secrets: never log or show these.

    Attributes:
        username: broker user name (MQTT ``username``, NATS ``user``).
        password: broker password.
        tls_ca: file of CA certificates to trust instead of the system's.
        tls_cert: client certificate file (mutual TLS).
        tls_key: the client certificate's key file.
        creds: a NATS ``.creds`` file (JWT + nkey seed).
    """

    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    creds: str | None = None

    def __repr__(self) -> str:
        # Keep the password out of logs and tracebacks.
        return f"LinkOptions(username={self.username!r}, tls={self.tls_ca or self.tls_cert!r})"

    @property
    def wants_tls(self) -> bool:
        """Whether any TLS file was given (which turns TLS on)."""
        return any((self.tls_ca, self.tls_cert, self.tls_key))

    def for_invite(self) -> LinkOptions | None:
        """What an invite carries: the shared login, not this device's own TLS files.

        The group secret is in the invite anyway, so a shared broker login adds no new
        exposure and lets a joiner connect with nothing else. File paths are this machine's:
        a joiner passes its own ``--tls-*`` files on ``join``.
        """
        shared = LinkOptions(username=self.username, password=self.password)
        return None if shared == LinkOptions() else shared

    def merged(self, override: LinkOptions) -> LinkOptions:
        """Return these options with every field that ``override`` sets replaced."""
        fields = {k: v for k, v in msgspec.structs.asdict(override).items() if v is not None}
        return msgspec.structs.replace(self, **fields)


def decode_options(raw: str | bytes | None) -> LinkOptions:
    """Decode ``groups.link_options`` (JSON or ``None``).

    Raises:
        UserError: the stored options are not valid.
    """
    if not raw:
        return LinkOptions()
    try:
        return msgspec.json.decode(raw, type=LinkOptions)
    except msgspec.DecodeError as exc:
        raise UserError(f"bad link options: {exc}") from exc


def encode_options(options: LinkOptions) -> str | None:
    """Encode options for ``groups.link_options`` (``None`` when there are none)."""
    return None if options == LinkOptions() else msgspec.json.encode(options).decode()


def options_from_params(raw: dict[str, Any] | None) -> LinkOptions:
    """Validate link options given to the API (``group.create`` / ``join`` ``options``).

    Raises:
        UserError: unknown fields or wrong types.
    """
    if not raw:
        return LinkOptions()
    try:
        return msgspec.convert(raw, LinkOptions)
    except msgspec.ValidationError as exc:
        raise UserError(f"bad link options: {exc}") from exc


def invite_options(raw: str | None) -> str | None:
    """What of a group's stored options an invite carries (see ``LinkOptions.for_invite``)."""
    shared = decode_options(raw).for_invite()
    return None if shared is None else encode_options(shared)
