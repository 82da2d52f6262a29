"""Sign-in costs: verifying the OpenID provider's tokens (prints numbers; see docs/performance.md).

- API: a JWT access token (RS256) verified by ``AccessTokenVerifier`` against the cached JWKS,
  per request (what every FHIR call with a provider's token costs before the verified-token cache);
- portal: an ID token as Pro Santé Connect may send it, a JWE (RSA-OAEP-256 + A256GCM, Carnet's
  3072-bit key) around a signed JWT, opened and verified once per sign-in.

The provider's discovery and JWKS are served from memory (httpx.MockTransport): the benchmark
measures Carnet's work, not a network.

    .venv/bin/python bench/sign_in.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
from joserfc import jwe, jwt
from joserfc.jwk import RSAKey

from carnet.auth.oidc import (
    AccessTokenVerifier,
    ClientSettings,
    OpenIDProvider,
    PendingSignIn,
    RelyingParty,
    encryption_key,
)

ISSUER = "https://psc.bench"
ROUNDS = 2000


def main() -> None:
    """Measure and print the verification rates."""
    signing = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    documents = {
        "/.well-known/wallet-openid-configuration": {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/auth",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/certs",
        },
        "/certs": {"keys": [signing.as_dict(private=False)]},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=documents[request.url.path])

    provider = OpenIDProvider(issuer=ISSUER, http=httpx.Client(transport=httpx.MockTransport(answer)))
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "carnet",
        "sub": "f:x:810001234567",
        "iat": now,
        "exp": now + 600,
        "SubjectNameID": "810001234567",
        "SubjectRole": ["10^1.2.250.1.213.1.1.5.5"],
    }
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, signing)
    verifier = AccessTokenVerifier(provider, audience="carnet", leeway=60, max_seconds=3600)
    verifier.verify(token, now=now)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        verifier.verify(token, now=now)
    api = ROUNDS / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as keys:
        key = encryption_key(Path(keys))
        client = ClientSettings(client_id="carnet", client_secret="s", redirect_uri="x")  # noqa: S106
        party = RelyingParty(provider, client, key)
        id_claims = {**claims, "nonce": "n", "acr": "eidas1"}
        inner = jwt.encode({"alg": "RS256", "kid": "k1"}, id_claims, signing)
        sealed = jwe.encrypt_compact(
            {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"},
            inner,
            key,
            algorithms=["RSA-OAEP-256", "A256GCM"],
        )
        pending = PendingSignIn(state="s", nonce="n", verifier="v", started=now)
        rounds = ROUNDS // 4
        started = time.perf_counter()
        for _ in range(rounds):
            party._id_token_claims(sealed, pending, now)
        portal = rounds / (time.perf_counter() - started)
    print(f"API access token (RS256, cached JWKS) verified: {api:,.0f} /s ({1e6 / api:.0f} µs each)")
    print(
        f"ID token (JWE RSA-OAEP-256/A256GCM + RS256) opened and verified: {portal:,.0f} /s ({1e3 / portal:.2f} ms each)"
    )
    print(f"JWKS fetches: {provider.jwks_fetches}")


if __name__ == "__main__":
    main()
