"""``Framer``: frames over a byte stream with a 4-byte big-endian length prefix.

Only stream transports (TCP) use it; WebSocket, MQTT and NATS carry one frame per message.
"""

from __future__ import annotations

from typing import Final

from switchboard.errors import FrameTooLarge, RemoteProtocolError
from switchboard.proto.frames import DEFAULT_MAX_FRAME_SIZE

PREFIX_SIZE: Final = 4


def frame_bytes(frame: bytes) -> bytes:
    """Return ``frame`` with its length prefix."""
    return len(frame).to_bytes(PREFIX_SIZE, "big") + frame


class Framer:
    """Split a byte stream into frames.

    Args:
        max_frame_size: security limit; a longer announced frame fails the stream before any
            of it is buffered.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._eof = False

    def receive_data(self, data: bytes) -> list[bytes]:
        """Take bytes; return the whole frames they complete.

        Raises:
            FrameTooLarge: a length prefix announces more than ``max_frame_size``.
        """
        self._buffer += data
        frames = []
        while len(self._buffer) >= PREFIX_SIZE:
            size = int.from_bytes(self._buffer[:PREFIX_SIZE], "big")
            if size > self.max_frame_size:
                raise FrameTooLarge(size, self.max_frame_size)
            end = PREFIX_SIZE + size
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[PREFIX_SIZE:end]))
            del self._buffer[:end]
        return frames

    def receive_eof(self) -> None:
        """The stream ended.

        Raises:
            RemoteProtocolError: it ended in the middle of a frame.
        """
        self._eof = True
        if self._buffer:
            raise RemoteProtocolError(
                f"stream ended inside a frame ({len(self._buffer)} bytes left)"
            )
