"""TLS for broker connections (MQTT and NATS): the client context, and what a refusal means.

Both broker adapters build their ``ssl.SSLContext`` here and turn the TLS failures that retrying
cannot fix into an ``AuthError``, which ends ``group create`` and ``join`` at once with one line
(as a refused login does) instead of after their wait for the link.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from switchboard.errors import AuthError

if TYPE_CHECKING:
    from switchboard.transports.options import LinkOptions


def context(options: LinkOptions, tls: bool) -> ssl.SSLContext | None:
    """Return the TLS settings for a broker connection, or ``None`` for plain TCP.

    Args:
        options: the CA to trust instead of the system's, and the client certificate.
        tls: the URL's scheme asks for TLS (any TLS file in ``options`` asks for it too).
    """
    if not (tls or options.wants_tls):
        return None
    made = ssl.create_default_context(cafile=options.tls_ca)
    if options.tls_cert:
        made.load_cert_chain(options.tls_cert, options.tls_key)
    return made


def untrusted_certificate(endpoint: str, exc: ssl.SSLCertVerificationError) -> AuthError:
    """The error for a broker certificate that failed verification."""
    reason = exc.verify_message or "certificate verify failed"
    return AuthError(f"{endpoint}: untrusted certificate ({reason}); check --tls-ca")


def refused(endpoint: str, exc: ssl.SSLError) -> AuthError | None:
    """The error for a TLS alert from the broker about our certificate, else ``None``.

    Such an alert (the broker requires a certificate and got none, or does not accept the one
    it got) will be the same on every retry.
    """
    text = (getattr(exc, "reason", None) or str(exc)).upper()
    if "CERTIFICATE_REQUIRED" in text:
        return AuthError(f"{endpoint} requires a client certificate: pass --tls-cert and --tls-key")
    alert = next((a for a in _CERTIFICATE_ALERTS if f"ALERT_{a}" in text), None)
    if alert is None:
        return None
    why = alert.replace("_", " ").lower()
    return AuthError(
        f"{endpoint} refused our client certificate ({why}); check --tls-cert/--tls-key"
    )


# TLS alerts (OpenSSL's names) by which a server turns down the client's certificate.
_CERTIFICATE_ALERTS = (
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
)
