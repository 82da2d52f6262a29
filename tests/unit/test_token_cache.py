"""The cache of verified bearer tokens (api/token_cache.py) and its use by the token verifier."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from carnet.api.auth import TokenVerifier, issue_token
from carnet.api.token_cache import VerifiedTokens
from carnet.domain.errors import Unauthenticated
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings
from carnet.testing import FixedSeconds

ALICE = Principal(kind=ActorKind.PATIENT, subject="alice")
BOB = Principal(kind=ActorKind.PATIENT, subject="bob")


def test_cached_token_served_until_its_exp() -> None:
    """A token is served from the cache until its ``exp``, never at or after it."""
    clock = FixedSeconds(1_000_000.0)
    cache = VerifiedTokens(ttl=3600, clock=clock)
    cache.put("t", ALICE, expires=clock.now + 10)
    assert cache.get("t") is ALICE
    clock.now += 9.9
    assert cache.get("t") is ALICE
    clock.now += 0.1
    assert cache.get("t") is None
    assert len(cache) == 0


def test_cached_token_verified_again_after_ttl() -> None:
    """A long-lived token is verified again once ``ttl`` has passed since its last verification."""
    clock = FixedSeconds(1_000_000.0)
    cache = VerifiedTokens(ttl=60, clock=clock)
    cache.put("t", ALICE, expires=clock.now + 3600)
    clock.now += 59
    assert cache.get("t") is ALICE
    clock.now += 1
    assert cache.get("t") is None


def test_cache_is_bounded_least_recently_used_first() -> None:
    """Past ``size`` tokens, the least recently used is dropped."""
    clock = FixedSeconds(1_000_000.0)
    cache = VerifiedTokens(size=2, clock=clock)
    cache.put("a", ALICE, expires=clock.now + 60)
    cache.put("b", BOB, expires=clock.now + 60)
    assert cache.get("a") is ALICE  # "b" is now the least recently used
    cache.put("c", BOB, expires=clock.now + 60)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is ALICE
    assert cache.get("c") is BOB


def test_verifier_caches_good_tokens_and_never_refusals(tmp_path: Path) -> None:
    """A verified token is cached by its exact string; a tampered or unknown one is refused every time."""
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    now = datetime.now(UTC)
    token = issue_token(settings, {"sub": "alice", "kind": "patient"}, now=now, lifetime=timedelta(minutes=5))
    verifier = TokenVerifier(settings)
    first = verifier.verify(f"Bearer {token}")
    assert first.subject == "alice"
    assert len(verifier.verified) == 1
    assert verifier.verify(f"Bearer {token}") is first
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(f"Bearer {tampered}")
    assert len(verifier.verified) == 1


def test_verifier_refuses_an_expired_token_it_had_cached(tmp_path: Path) -> None:
    """A token cached while valid is refused once expired: the cache keeps its ``exp``."""
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys", token_leeway_seconds=0)
    token = issue_token(
        settings, {"sub": "alice", "kind": "patient"}, now=datetime.now(UTC), lifetime=timedelta(seconds=1)
    )
    verifier = TokenVerifier(settings)
    assert verifier.verify(f"Bearer {token}").subject == "alice"
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(f"Bearer {token}")
