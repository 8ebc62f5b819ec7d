"""TLS for the real brokers in tests: a throwaway PKI, and Mosquitto/nats-server listening on TLS.

``make_pki`` writes, with ``cryptography``, a CA, a server certificate for 127.0.0.1 and
localhost, a client certificate, and a second CA that signed none of them (the "wrong CA").
``TlsMosquitto`` is ``brokerlab.Mosquitto`` with its listener on TLS (optionally requiring a
client certificate); ``nats_tls_block`` is the ``tls { }`` block for ``brokerlab.NatsServer``,
and ``nats_operator`` its decentralised auth (operator, account and user JWTs, and a ``.creds``).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from brokerlab import Mosquitto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files ``make_pki`` wrote."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + _DAY)
    )


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    name: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], *, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    ca_cert, ca_key = ca
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(name, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    """Write a CA, a server and a client certificate (and an unrelated CA) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca("switchboard test CA")
    server = _leaf("127.0.0.1", ca, server=True)
    client = _leaf("switchboard test client", ca, server=False)
    wrong = _ca("some other CA")
    return Pki(
        ca=_write_cert(ca[0], folder / "ca.pem"),
        server_cert=_write_cert(server[0], folder / "server.pem"),
        server_key=_write_key(server[1], folder / "server.key"),
        client_cert=_write_cert(client[0], folder / "client.pem"),
        client_key=_write_key(client[1], folder / "client.key"),
        wrong_ca=_write_cert(wrong[0], folder / "wrong-ca.pem"),
    )


class TlsMosquitto(Mosquitto):
    """Mosquitto whose one listener speaks TLS; ``require_certificate`` turns on mutual TLS."""

    def __init__(
        self,
        data: Path,
        pki: Pki,
        *,
        require_certificate: bool = False,
        users: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data, users=users)
        self.pki = pki
        self.require_certificate = require_certificate

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = super().command()
        conf = self.data / "mosquitto.conf"
        # Listener settings apply to the listener the base config opened on its first line.
        tls = (
            f"cafile {self.pki.ca}\n"
            f"certfile {self.pki.server_cert}\n"
            f"keyfile {self.pki.server_key}\n"
            f"require_certificate {'true' if self.require_certificate else 'false'}\n"
        )
        conf.write_text(conf.read_text() + tls)
        return command


def nats_tls_block(pki: Pki, *, verify: bool = False) -> str:
    """The nats-server ``tls { }`` block for ``pki`` (``verify``: require client certificates)."""
    return (
        f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}", '
        f'ca_file: "{pki.ca}", verify: {"true" if verify else "false"}, timeout: 5 }}\n'
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _nkey(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _jwt(issuer: nkeys.KeyPair, subject: str, nats: dict[str, Any]) -> str:
    """A NATS v2 JWT for ``subject``, signed by ``issuer`` (what ``nsc`` would write)."""
    claims = {
        "jti": uuid.uuid4().hex,
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": subject[:8],
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{header}.{body}.{_b64(issuer.sign(f'{header}.{body}'.encode()))}"


def nats_operator(folder: Path) -> tuple[str, Path]:
    """Set up NATS decentralised auth: an operator, a JetStream account with one user, and
    the system account the server needs.

    Returns:
        The nats-server config lines (operator mode, accounts preloaded in memory) and the
        user's ``.creds`` file (its JWT and nkey seed).
    """
    operator = _nkey(nkeys.PREFIX_BYTE_OPERATOR)
    account, system = _nkey(nkeys.PREFIX_BYTE_ACCOUNT), _nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    user = _nkey(nkeys.PREFIX_BYTE_USER)
    op_pub, acc_pub = operator.public_key.decode(), account.public_key.decode()
    sys_pub = system.public_key.decode()
    limits = ("subs", "data", "payload", "imports", "exports", "conn", "leaf", "mem_storage",
              "disk_storage", "streams", "consumer")  # fmt: skip
    account_jwt = _jwt(operator, acc_pub, {"type": "account", "limits": dict.fromkeys(limits, -1)})
    system_jwt = _jwt(operator, sys_pub, {"type": "account"})
    user_claims = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    user_jwt = _jwt(account, user.public_key.decode(), user_claims)
    creds = folder / "user.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    config = (
        f"operator: {_jwt(operator, op_pub, {'type': 'operator'})}\n"
        f"system_account: {sys_pub}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{ {acc_pub}: {account_jwt}, {sys_pub}: {system_jwt} }}\n"
    )
    return config, creds
