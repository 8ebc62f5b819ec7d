"""Mutual authentication: the transcript and the three proofs. Stores nothing, draws no randomness.

The client proves two things by signing the transcript twice: membership of the group, with
the group auth key (derived from the group secret; see ``crypto``), and possession of its
device key, whose public half it sent in ``Hello`` and from which its device id is derived
(``ids.device_id_from_public_key``). So a member can speak only as a device whose private key
it holds. The server proves its identity by signing the same transcript with its own Ed25519
key, which the client pins (the invite carries it). Each signature carries its own prefix, so
none passes for another. Both nonces are in the transcript, so a recorded proof is worthless in
any other session, and no secret ever crosses the wire: only public keys, nonces and signatures
do.
"""

from __future__ import annotations

from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.crypto import sign, verify_signature
from switchboard.proto.frames import Challenge, Hello

_CONTEXT: Final = b"switchboard handshake v1\x00"
_CLIENT: Final = b"client\x00"
_DEVICE: Final = b"device\x00"
_SERVER: Final = b"server\x00"
_encoder: Final = msgspec.msgpack.Encoder()


def transcript(hello: Hello, nonce: bytes, server: str, server_key: bytes) -> bytes:
    """Return the bytes every proof signs: the whole Hello and the server's half of Challenge."""
    fields = (
        hello.version,
        hello.group,
        hello.device,
        hello.nonce,
        hello.group_key,
        hello.device_key,
        hello.create,
        nonce,
        server,
        server_key,
    )
    return _CONTEXT + _encoder.encode(fields)


def server_proof(identity: Ed25519PrivateKey, data: bytes) -> bytes:
    """Sign the transcript as the server."""
    return sign(identity, _SERVER + data)


def client_proof(group_auth: Ed25519PrivateKey, data: bytes) -> bytes:
    """Sign the transcript as a group member."""
    return sign(group_auth, _CLIENT + data)


def device_proof(identity: Ed25519PrivateKey, data: bytes) -> bytes:
    """Sign the transcript as the device whose key is ``Hello.device_key``."""
    return sign(identity, _DEVICE + data)


def check_server_proof(hello: Hello, challenge: Challenge) -> bool:
    """Return whether the challenge's proof is the server key's signature of this session."""
    data = transcript(hello, challenge.nonce, challenge.server, challenge.server_key)
    return verify_signature(challenge.server_key, challenge.proof, _SERVER + data)


def check_client_proof(hello: Hello, challenge: Challenge, proof: bytes) -> bool:
    """Return whether ``proof`` is the group key's signature of this session."""
    data = transcript(hello, challenge.nonce, challenge.server, challenge.server_key)
    return verify_signature(hello.group_key, proof, _CLIENT + data)


def check_device_proof(hello: Hello, challenge: Challenge, proof: bytes) -> bool:
    """Return whether ``proof`` is the device key's signature of this session."""
    data = transcript(hello, challenge.nonce, challenge.server, challenge.server_key)
    return verify_signature(hello.device_key, proof, _DEVICE + data)


def rekey_message(
    group: str, old_key: bytes, new_key: bytes, members: list[str], forgotten: list[str]
) -> bytes:
    """What the new group auth key signs when a device asks a relay to switch to it."""
    return b"sb-rekey-v1\x00" + _encoder.encode([group, old_key, new_key, members, forgotten])
