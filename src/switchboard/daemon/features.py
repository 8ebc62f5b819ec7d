"""The daemon's features, one line each: the registry the API and the daemon work through.

A new feature is one module ending in ``FEATURE = Feature(...)`` (daemon/registry.py) plus one
line here (docs/internals.md, "Daemon features"). The order matters only for reactions and
lifecycle hooks: reactions run in this order, ``start`` hooks too, ``stop`` hooks in reverse.
"""

from __future__ import annotations

from typing import Final

from switchboard.daemon import (
    agents,
    approvals,
    clocks,
    coordination,
    delivery,
    device,
    files,
    forget,
    groups,
    handoff,
    leases,
    messages,
    pairing,
    ping,
    plans,
    queries,
    receipts,
    resume,
    rooms,
    tasks,
    term,
    threads,
    transcripts,
)
from switchboard.daemon.registry import Registry

#: Every feature of the daemon, in reaction order.
FEATURES: Final = (
    device.FEATURE,  # ping, init, status, devices, shutdown
    agents.FEATURE,  # register, tags.set, agents, presence.set
    groups.FEATURE,  # group.create, join, invite, link.*
    messages.FEATURE,  # send, inbox; delivered receipts; receipt waits
    queries.FEATURE,  # events, events.follow
    delivery.FEATURE,  # agent.hook, agent.identify, inbox.take, events.subscribe & co
    receipts.FEATURE,  # message.get, message.ack, message.wait
    rooms.FEATURE,  # room.*
    threads.FEATURE,  # thread.show, search, sent, event.record
    leases.FEATURE,  # lease.*
    coordination.FEATURE,  # liveness, status notices, watches, edit conflicts
    tasks.FEATURE,  # spawn, spawn.*, tasks, task.*; the task runner
    transcripts.FEATURE,  # transcript.read|search|allow|deny; serves transcript pages
    plans.FEATURE,  # plan.run, plans, plan.show; the plan runner (task graphs)
    approvals.FEATURE,  # prompt.ask, approvals, prompt.answer: permission prompts travel
    handoff.FEATURE,  # handoff; handoff.start: a successor elsewhere, git changes carried
    resume.FEATURE,  # resume, fork: a stopped agent's harness session continued
    ping.FEATURE,  # device.ping; answers other devices' ping requests
    term.FEATURE,  # term.read, term.type: an agent's tmux pane, here or over the channel
    clocks.FEATURE,  # peers' clock skew bounds, from their events' times (status "clock")
    files.FEATURE,  # file.send, files, file.get, files.gc; serves and fetches file chunks
    pairing.FEATURE,  # invite.create|list|revoke|pending|admit: pairing codes; LAN announce
    forget.FEATURE,  # device.forget: remove a device, rotate the group's keys
)

REGISTRY: Final = Registry(FEATURES)
