"""The one way API methods turn a request's params into a typed Struct."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from switchboard.errors import UserError

P = TypeVar("P", bound=msgspec.Struct)

# Longest wait a client may ask of any waiting method, so a forgotten call cannot pin a task.
MAX_WAIT = 24 * 3600.0


class AgentParams(msgspec.Struct, forbid_unknown_fields=False):
    """Params of a method that acts for an agent (``agent``: its name)."""

    agent: str = ""


def params_of(cls: type[P], params: Any) -> P:
    """Validate ``params`` (a JSON object, or ``None`` for none) into ``cls``.

    Raises:
        UserError: they do not fit, with msgspec's message naming the field.
    """
    try:
        return msgspec.convert(params or {}, cls)
    except msgspec.ValidationError as exc:
        raise UserError(f"invalid parameters: {exc}") from exc
