"""transports/tls.py: which TLS failures are a clear, final refusal of our certificate."""

from __future__ import annotations

import ssl

import pytest

from switchboard.errors import AuthError
from switchboard.transports import tls


def _alert(name: str) -> ssl.SSLError:
    return ssl.SSLError(1, f"[SSL: {name}] {name.lower().replace('_', ' ')} (_ssl.c:2580)")


def test_missing_certificate_names_the_flags() -> None:
    """TLS 1.3's "certificate required" asks for --tls-cert and --tls-key."""
    error = tls.refused("mqtts://b:8883", _alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"))
    assert isinstance(error, AuthError)
    assert str(error) == (
        "mqtts://b:8883 requires a client certificate: pass --tls-cert and --tls-key"
    )


@pytest.mark.parametrize(
    ("alert", "why"),
    [
        ("TLSV1_ALERT_UNKNOWN_CA", "unknown ca"),
        ("SSLV3_ALERT_BAD_CERTIFICATE", "bad certificate"),
        ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "certificate expired"),
        ("TLSV1_ALERT_ACCESS_DENIED", "access denied"),
    ],
)
def test_certificate_turned_down_says_why(alert: str, why: str) -> None:
    """The broker's alert about the certificate we gave is final and says what it was."""
    error = tls.refused("tls://n:4222", _alert(alert))
    assert isinstance(error, AuthError)
    assert f"refused our client certificate ({why})" in str(error)


@pytest.mark.parametrize(
    "alert", ["TLSV1_ALERT_INTERNAL_ERROR", "WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING"]
)
def test_other_tls_failures_are_not_refusals(alert: str) -> None:
    """Failures that say nothing about our certificate are left to the retry loop."""
    assert tls.refused("tls://n:4222", _alert(alert)) is None
