"""The ``transcripts`` rule of a device's policy: who may read its agents' transcripts."""

from __future__ import annotations

import pytest

from switchboard.errors import UserError
from switchboard.tasks import policy, policyfile
from switchboard.tasks.policy import SpawnRequest

LAPTOP = "a" * 26


def _read(text: str) -> policy.Policy:
    import tomllib  # noqa: PLC0415

    return policy.parse(tomllib.loads(text))


def test_policy_transcripts_default_only_the_own_device() -> None:
    """With no rule, this device reads its agents' transcripts and no other device does."""
    rules = policy.Policy()
    assert policy.may_read_transcript(rules, "self", local=True, agent="luna")
    assert not policy.may_read_transcript(rules, LAPTOP, local=False, agent="luna")


def test_policy_transcripts_allow_grants_reading_and_nothing_else() -> None:
    """``allow_transcripts`` gives a new device a table that lets it read the named agents'
    transcripts but spawn nothing."""
    text = policyfile.allow_transcripts("", LAPTOP, agents=["lu*"], name="laptop")
    rules = _read(text)
    assert policy.may_read_transcript(rules, LAPTOP, local=False, agent="luna")
    assert not policy.may_read_transcript(rules, LAPTOP, local=False, agent="nova")
    request = SpawnRequest(device=LAPTOP, local=False, harness="claude", directory="/", text="x")
    refused = policy.decide(rules, request, running=0, running_of_device=0, home="/root")
    assert isinstance(refused, policy.Refused)
    assert policyfile.grant_json(rules.devices[LAPTOP])["transcripts"] == ["lu*"]


def test_policy_transcripts_allow_keeps_an_existing_spawn_grant() -> None:
    """Allowing transcripts to a device that may spawn adds the rule and keeps the rest."""
    text = policyfile.allow("", LAPTOP, local=False, dirs=["/srv"])
    text = policyfile.allow_transcripts(text, LAPTOP, agents=["*"])
    grant = _read(text).devices[LAPTOP]
    assert grant.dirs == ("/srv",)
    assert grant.harnesses
    assert grant.transcripts == ("*",)


def test_policy_transcripts_deny_takes_reading_away() -> None:
    """``deny_transcripts`` removes the rule (and reports whether there was one)."""
    text = policyfile.allow_transcripts("", LAPTOP, agents=["*"])
    new, changed = policyfile.deny_transcripts(text, LAPTOP)
    assert changed
    assert not policy.may_read_transcript(_read(new), LAPTOP, local=False, agent="luna")
    assert policyfile.deny_transcripts(new, LAPTOP) == (new, False)


def test_policy_transcripts_bad_value_is_refused() -> None:
    """A ``transcripts`` that is not a list of strings is a clear error naming it."""
    with pytest.raises(UserError, match=r"devices\.x\.transcripts"):
        _read('[devices.x]\ntranscripts = "all"\n')
