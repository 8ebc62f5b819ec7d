"""The one way API methods turn a request's params into a typed Struct, and the ranges a
number may take: a value out of its range is a ``bad_request`` naming the parameter."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, TypeVar

import msgspec

from switchboard.errors import UserError

P = TypeVar("P", bound=msgspec.Struct)

# Longest wait a client may ask of any waiting method, so a forgotten call cannot pin a task.
MAX_WAIT: Final = 24 * 3600.0
# Most rows one listing (inbox, thread, search, sent, room read) returns.
MAX_LISTING: Final = 1000
# Most rows a bulk read returns (store/query.py refuses larger event results).
MAX_EVENT_ROWS: Final = 10_000

#: How many rows of a listing: 1 to ``MAX_LISTING``.
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_LISTING)]
#: How many rows of a bulk read (events, an inbox emptied at once): 1 to ``MAX_EVENT_ROWS``.
Rows = Annotated[int, msgspec.Meta(ge=1, le=MAX_EVENT_ROWS)]
#: A local id (of an event or message); 0 where it means "none".
LocalId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
#: A wait or a timeout in seconds: 0 to ``MAX_WAIT``.
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT)]
#: A process id.
Pid = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
#: A process's exit status as a harness reports it (negative: killed by a signal).
ExitStatus = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
#: The size of a block placed in a model's context, in characters.
Chars = Annotated[int, msgspec.Meta(ge=500, le=1_000_000)]

_AT = re.compile(r"^(?P<what>.*?) - at `\$\.(?P<field>[\w.\[\]]+)`$")


class NoParams(msgspec.Struct):
    """Params of a method that takes none (any given are ignored)."""


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
        found = _AT.match(str(exc))
        if found:  # "Expected `int` <= 1000 - at `$.limit`" -> "parameter limit: expected ..."
            what = found["what"].replace("`", "")
            raise UserError(f"parameter {found['field']}: {what[:1].lower()}{what[1:]}") from exc
        raise UserError(f"invalid parameters: {exc}") from exc
