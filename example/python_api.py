"""Two agents on this device talk through Switchboard's Python client (docs/python-api.md).

Run it with a home of its own: ``SWITCHBOARD_HOME=/tmp/sb-demo python example/python_api.py``
(the first call starts that home's daemon; ``switchboard daemon stop`` ends it).
"""

import asyncio

import switchboard

# connect() starts the daemon of $SWITCHBOARD_HOME if none runs; agent= names who acts.
with switchboard.connect(agent="nova") as nova, switchboard.connect(agent="luna") as luna:
    nova.inbox()  # an agent is registered the first time it acts
    sent = luna.send("@nova", "the parser is ported: can you review it?")
    print(sent.result, [(r.address.split(":")[0], r.state) for r in sent.recipients])

    for message in nova.inbox():  # typed: switchboard.Message
        print(f"nova got #{message.id} from {message.from_.split(':')[0]}: {message.text}")

    status = luna.status()  # switchboard.Status: device, daemon, groups, agents
    print(sorted(agent.name for agent in status.agents))

    for event in luna.events(type="message_posted", last=1):  # switchboard.EventRow
        print(event.type, event.agent.split(":")[0], event.data["text"])

    # Anything the CLI can do is an API method: typed() takes its name and params and
    # answers with its shape (list[HistoryMessage] of switchboard.daemon.shapes); call() gives JSON.
    print(luna.typed("thread.show", {"agent": "luna", "id": str(sent.id)})[0].text)


async def main() -> None:
    """The same with asyncio: AsyncClient connects at its first call."""
    async with switchboard.AsyncClient.for_home(agent="nova") as nova:
        answer = await nova.send("@luna", "on it")
        print(answer.result)


asyncio.run(main())
