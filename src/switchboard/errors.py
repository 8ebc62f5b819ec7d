"""The whole Switchboard exception tree.

- ``SwitchboardError``
  - ``ProtocolError`` (sans-IO; carries ``code`` for the ``Bye`` frame)
    - ``LocalProtocolError``: we tried something the protocol forbids
    - ``RemoteProtocolError``: the peer sent something the protocol forbids
      - ``FrameTooLarge(size, limit)``
      - ``TamperedEnvelope``: an envelope failed authentication
        - ``ForgedEvent``: an event's signature is missing or not its origin device's
      - ``TamperedDirect``: a directed frame failed authentication (sender, seal or recipient)
  - ``AuthError``
    - ``InvalidInvite`` (expired, already used or malformed)
    - ``InvalidToken``
    - ``Forbidden``
  - ``TransportError``
    - ``ConnectError(endpoint)``
    - ``ConnectionLost``: broken by the peer or network
    - ``TransportClosed``: closed by us
    - ``TransportTimeout``
    - ``Unreachable(device)``: the device is not connected to the group's link
  - ``Rejected(reason_code)``: a relay or broker refused the request
  - ``RemoteError(remote_code)``: another device answered a directed call with an error
  - ``StoreError``
    - ``QueryRejected``
    - ``MigrationError``
  - ``UserError``: bad input from the CLI, MCP or dashboard
    - ``NotFound``
    - ``InvalidAddress``
  - ``DaemonUnavailable``: the local daemon could not be reached or started

Messages are lowercase facts with numbers and names. They never contain secrets or payloads.
Each class carries ``exit_code`` (CLI) and ``code`` (API and ``Bye`` frames), so every boundary
maps errors in one place.
"""

from __future__ import annotations

from enum import IntEnum


class ByeCode(IntEnum):
    """Reason codes carried by ``Bye`` frames and ``ProtocolError.code``."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_VERSION = 1003
    FRAME_TOO_LARGE = 1009
    TIMEOUT = 1010
    AUTH_FAILED = 4001
    UNKNOWN_GROUP = 4002
    RATE_LIMITED = 4029
    TAMPERED = 4030
    OVERLOADED = 4013
    INTERNAL = 1011


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""

    exit_code = 1
    code = "error"


# -- protocol ----------------------------------------------------------------------------------


class ProtocolError(SwitchboardError):
    """A rule of the sync protocol was broken."""

    code = "protocol_error"
    bye_code: ByeCode = ByeCode.PROTOCOL_ERROR


class LocalProtocolError(ProtocolError, RuntimeError):
    """We tried something the protocol forbids in the current state (our bug or misuse)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""

    def __init__(self, message: str, bye_code: ByeCode = ByeCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.bye_code = bye_code


class FrameTooLarge(RemoteProtocolError):
    """A frame exceeded the size limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"frame of {size} bytes exceeds limit of {limit} bytes", ByeCode.FRAME_TOO_LARGE
        )
        self.size = size
        self.limit = limit


class TamperedEnvelope(RemoteProtocolError):
    """An envelope failed authenticated decryption: altered, replayed elsewhere or wrong key."""

    def __init__(self, origin: str, seq: int) -> None:
        super().__init__(
            f"envelope {seq} from device {origin[:12]} failed authentication", ByeCode.TAMPERED
        )
        self.origin = origin
        self.seq = seq


class ForgedEvent(TamperedEnvelope):
    """An event opened with the group key but is not signed by the device it names as origin.

    Only a member can seal such an envelope: it claims another device's origin, or alters or
    re-numbers an event of that device.
    """

    def __init__(self, origin: str, seq: int, why: str) -> None:
        super().__init__(origin, seq)
        self.args = (f"event {seq} from device {origin[:12]} is forged: {why}",)


class TamperedDirect(RemoteProtocolError):
    """A directed frame failed authentication: altered, forged sender, or not addressed to us."""

    def __init__(self, sender: str, reason: str) -> None:
        super().__init__(
            f"directed frame from device {sender[:12]} rejected: {reason}", ByeCode.TAMPERED
        )
        self.sender = sender


# -- auth --------------------------------------------------------------------------------------


class AuthError(SwitchboardError):
    """Authentication or authorisation failed."""

    code = "auth_failed"


class InvalidInvite(AuthError):
    """An invite is malformed, expired or already used."""

    code = "invalid_invite"


class InvalidToken(AuthError):
    """A token is ours but bad."""

    code = "invalid_token"


class Forbidden(AuthError):
    """The caller is known but not allowed to do this."""

    code = "forbidden"


# -- transport ---------------------------------------------------------------------------------


class TransportError(SwitchboardError):
    """A link to a peer, relay or broker failed."""

    code = "transport_error"


class ConnectError(TransportError):
    """Could not connect to an endpoint."""

    def __init__(self, endpoint: str, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"cannot connect to {endpoint}{detail}")
        self.endpoint = endpoint


class ConnectionLost(TransportError):
    """The connection was broken by the peer or the network."""


class TransportClosed(TransportError):
    """The connection was closed by us."""


class TransportTimeout(TransportError):
    """An operation on the link took longer than allowed."""


class Unreachable(TransportError):
    """A directed frame or call could not reach its device (not connected, gone, or refused)."""

    code = "unreachable"

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device[:12]} is unreachable: {reason}")
        self.device = device
        self.reason = reason


class Rejected(SwitchboardError):
    """A relay or broker refused the request."""

    code = "rejected"

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class RemoteError(SwitchboardError):
    """Another device answered a directed call with an error (its code and message)."""

    code = "remote_error"

    def __init__(self, device: str, remote_code: str, message: str) -> None:
        super().__init__(f"device {device[:12]} answered {remote_code}: {message}")
        self.device = device
        self.remote_code = remote_code


# -- store -------------------------------------------------------------------------------------


class StoreError(SwitchboardError):
    """The local store failed."""

    code = "store_error"


class QueryRejected(StoreError):
    """A user query was refused (writes, attach, pragmas) or hit a limit."""

    code = "query_rejected"


class MigrationError(StoreError):
    """A schema migration failed or the database is newer than this program."""

    code = "migration_error"


# -- user --------------------------------------------------------------------------------------


class UserError(SwitchboardError):
    """Bad input from the CLI, MCP or dashboard."""

    code = "bad_request"


class NotFound(UserError):
    """A named thing (agent, device, group, event) does not exist."""

    code = "not_found"


class InvalidAddress(UserError):
    """An address, name or id could not be parsed."""

    code = "invalid_address"


class DaemonUnavailable(SwitchboardError):
    """The local daemon could not be reached or started."""

    code = "daemon_unavailable"


#: API error code -> class, for turning an error response back into an exception.
BY_CODE: dict[str, type[SwitchboardError]] = {
    cls.code: cls
    for cls in (
        SwitchboardError,
        ProtocolError,
        AuthError,
        InvalidInvite,
        InvalidToken,
        Forbidden,
        TransportError,
        Unreachable,
        RemoteError,
        StoreError,
        QueryRejected,
        MigrationError,
        UserError,
        NotFound,
        InvalidAddress,
        DaemonUnavailable,
    )
}
