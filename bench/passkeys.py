"""Built-in patient accounts: the cost of checking a passkey assertion and a TOTP code (prints numbers).

A P-256 key signs assertions as a security key would (authenticator data, SHA-256 of the client
data, ECDSA); Carnet's ``RelyingParty.authenticated`` checks them with the ``webauthn`` library
(challenge, origin, relying-party id hash, user presence, signature, counter). TOTP: ``pyotp``
computing the three codes of the accepted window, as ``PatientAccounts.check_totp`` does.

    .venv/bin/python bench/passkeys.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time

import cbor2
import pyotp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from carnet.auth.passkeys import RelyingParty

ROUNDS = 1000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    """Measure and print the verification rates."""
    party = RelyingParty.of("https://carnet.bench/fhir")
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    cose = cbor2.dumps(
        {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
    )
    challenge = b"c" * 32
    assertions = []
    for counter in range(1, ROUNDS + 1):
        data = hashlib.sha256(party.rp_id.encode()).digest() + bytes([0x05]) + struct.pack(">I", counter)
        client = json.dumps(
            {
                "type": "webauthn.get",
                "challenge": _b64(challenge),
                "origin": party.origin,
                "crossOrigin": False,
            }
        ).encode()
        signature = key.sign(data + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        assertions.append(
            json.dumps(
                {
                    "id": "AAAA",
                    "rawId": "AAAA",
                    "type": "public-key",
                    "response": {
                        "clientDataJSON": _b64(client),
                        "authenticatorData": _b64(data),
                        "signature": _b64(signature),
                    },
                    "clientExtensionResults": {},
                }
            )
        )
    started = time.perf_counter()
    for counter, assertion in enumerate(assertions):
        party.authenticated(assertion, challenge, cose, counter)
    passkey = ROUNDS / (time.perf_counter() - started)
    totp = pyotp.TOTP(pyotp.random_base32())
    started = time.perf_counter()
    for _ in range(ROUNDS):
        step = int(time.time()) // totp.interval
        [totp.at(s * totp.interval) for s in (step - 1, step, step + 1)]
    codes = ROUNDS / (time.perf_counter() - started)
    print(f"passkey assertion (ES256) verified by webauthn: {passkey:,.0f} /s ({1e6 / passkey:.0f} µs each)")
    print(f"TOTP window (3 codes) computed: {codes:,.0f} /s ({1e6 / codes:.0f} µs each)")


if __name__ == "__main__":
    main()
