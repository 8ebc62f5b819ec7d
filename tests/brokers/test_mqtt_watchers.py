"""paho's socket is never watched after it closed (the soak's 5.6 s MQTT recoveries).

aiomqtt starts watching paho's socket a loop turn after paho asks: a publish just before the
connection closed (the broker died) then watched a closed descriptor, or one the daemon had
opened again for something else, and on uvloop a later connection on that descriptor could
hang until a timeout. Here the connection closes in the same turn as a publish, on the loop the
daemon runs (``runloop``: uvloop where installed): no watch may start on the closed descriptor
(the loop would report "Bad file descriptor", or watch whatever took the descriptor next).
"""

from __future__ import annotations

import asyncio
from typing import Any

from brokerlab import Mosquitto

from switchboard.runloop import new_loop
from switchboard.transports import mqtt
from switchboard.transports.options import LinkOptions


def test_no_watch_starts_after_the_socket_closed(mosquitto: Mosquitto) -> None:
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: errors.append(context))
        for _ in range(3):
            client = await mqtt.connect(mosquitto.url, LinkOptions(), timeout=10)
            try:
                await client.publish("sb-test/watchers", b"settled")
                paho = client._client._client
                paho.publish("sb-test/watchers", b"x" * 1000, qos=1)  # asks to watch for writing
                paho._sock_close()  # the connection ends in the same turn (as on a broken pipe)
                # Callbacks run in the order they were asked for: once this one has run, so
                # has every watch paho asked for (aiomqtt defers each to a later turn).
                turn = loop.create_future()
                loop.call_soon_threadsafe(turn.set_result, None)
                await asyncio.wait_for(turn, 5)
            finally:
                await client.aclose()
        assert not errors, errors

    loop = new_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.close()
