"""The `carnet` command line: generation and the development token issuer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from carnet.api.app import build_services
from carnet.settings import Settings
from carnet.web.identities import demo_professionals
from served import free_port, popen_serve, serve_env, wait_until_up


def _carnet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("CARNET_") or k.startswith("CARNET_TEST_")
    }
    return subprocess.run(
        [sys.executable, "-m", "carnet", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def test_generate_is_deterministic(tmp_path: Path) -> None:
    """`carnet generate` writes the same bytes for the same seed and other bytes for another seed."""
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        done = _carnet(
            "generate", "--patients", "2", "--seed", seed, "--documents", "2", "--out", str(tmp_path / name)
        )
        assert done.returncode == 0, done.stderr
    first = [(tmp_path / "a" / f).read_bytes() for f in sorted(os.listdir(tmp_path / "a"))]
    again = [(tmp_path / "b" / f).read_bytes() for f in sorted(os.listdir(tmp_path / "b"))]
    other = [(tmp_path / "c" / f).read_bytes() for f in sorted(os.listdir(tmp_path / "c"))]
    assert len(first) == 2
    assert first == again
    assert first != other


def test_token_refused_in_production(tmp_path: Path) -> None:
    """`carnet token` works in development and is refused in production mode."""
    keys = str(tmp_path / "keys")
    dev = _carnet("token", "--kind", "patient", "--patient", "p1", env={"CARNET_KEY_DIR": keys})
    assert dev.returncode == 0, dev.stderr
    assert dev.stdout.count(".") == 2
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    production = {
        "CARNET_MODE": "production",
        "CARNET_KEY_DIR": keys,
        "CARNET_DATA_DIR": str(tmp_path / "data"),
        "CARNET_OIDC_ISSUER": "https://psc.example",
        "CARNET_OIDC_JWKS_FILE": str(jwks),
    }
    refused = _carnet("token", "--kind", "patient", "--patient", "p1", env=production)
    assert refused.returncode != 0
    assert "production" in refused.stderr


def test_production_server_rejects_development_tokens(tmp_path: Path) -> None:
    """A token from the development issuer does not verify on a production server."""
    from datetime import UTC, datetime, timedelta

    import pytest

    from carnet.api.auth import TokenVerifier, issue_token
    from carnet.domain.errors import Unauthenticated
    from carnet.settings import Mode, Settings

    development = Settings(key_dir=tmp_path / "keys", data_dir=tmp_path / "data")
    token = issue_token(
        development, {"kind": "patient", "sub": "p"}, now=datetime.now(UTC), lifetime=timedelta(hours=1)
    )
    assert TokenVerifier(development).verify(f"Bearer {token}").subject == "p"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from jwt.algorithms import OKPAlgorithm

    jwks = tmp_path / "jwks.json"
    public = Ed25519PrivateKey.generate().public_key()
    jwks.write_text('{"keys": [' + OKPAlgorithm.to_jwk(public) + "]}")
    production = Settings(
        mode=Mode.PRODUCTION,
        key_dir=tmp_path / "keys",
        data_dir=tmp_path / "data",
        oidc_issuer="https://psc.example",
        oidc_jwks_file=jwks,
    )
    with pytest.raises(Unauthenticated):
        TokenVerifier(production).verify(f"Bearer {token}")


def test_demo_seeds_and_points_to_both_portals(tmp_path: Path) -> None:
    """`carnet demo --no-serve` seeds the records and says where the portals and the API are."""
    env = {"CARNET_DATA_DIR": str(tmp_path / "data"), "CARNET_KEY_DIR": str(tmp_path / "keys")}
    done = _carnet("demo", "--patients", "2", "--no-serve", env=env)
    assert done.returncode == 0, done.stderr
    assert "2 synthetic patients" in done.stdout
    assert "Portals: http://127.0.0.1:8000/login" in done.stdout
    assert "/patient/" in done.stdout
    assert "/pro/" in done.stdout
    assert "FHIR API: http://127.0.0.1:8000/fhir/metadata" in done.stdout
    # The printed professional token names a professional of the demo directory.
    printed = re.search(r"--kind professional --idnps (\d+)", done.stdout)
    assert printed is not None
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    services = build_services(settings)
    try:
        assert printed.group(1) in {p.idnps for p in demo_professionals(services.records)}
    finally:
        services.store.engine.dispose()


def test_token_carries_the_claims_tests_need_and_says_what_the_server_will_refuse(tmp_path: Path) -> None:
    """`carnet token` signs occupational, represents and feed claims, and warns on stderr of a refusal to come."""
    import jwt

    keys = tmp_path / "keys"
    env = {"CARNET_KEY_DIR": str(keys)}
    first = _carnet("token", "--kind", "representative", "--represents", "r1", "--represents", "r2", env=env)
    assert first.returncode == 0, first.stderr
    assert "no development issuer key" in first.stderr  # the key was created by this call
    claims = jwt.decode(first.stdout.strip(), options={"verify_signature": False})
    assert claims["represents"] == ["r1", "r2"]
    assert f"CARNET_KEY_DIR={keys.resolve()}" in first.stderr
    doctor = _carnet("token", "--kind", "professional", "--idnps", "810001234567", "--occupational", env=env)
    assert jwt.decode(doctor.stdout.strip(), options={"verify_signature": False})["occupational"] is True
    assert "no development issuer key" not in doctor.stderr
    feed = _carnet("token", "--kind", "feed", "--feed-category", "11", env=env)
    assert feed.returncode == 0
    assert jwt.decode(feed.stdout.strip(), options={"verify_signature": False})["feed_categories"] == ["11"]
    assert "--feed" in feed.stderr  # a feed's token without its feed id will be refused


def test_apps_add_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """carnet apps add prints a confidential app's secret once; list shows it; remove takes it out; bad input exits 1."""
    from typer.testing import CliRunner

    from carnet.cli import app

    for name in [k for k in os.environ if k.startswith("CARNET_") and not k.startswith("CARNET_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARNET_KEY_DIR", str(tmp_path / "keys"))
    runner = CliRunner()

    def carnet(*args: str) -> Result:
        return runner.invoke(app, list(args))

    added = carnet(
        "apps", "add", "Suivi", "--kind", "confidential", "--client-id", "suivi",
        "--redirect-uri", "https://suivi.example/cb", "--scope", "patient/Observation.rs",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "client_id: suivi" in added.stdout
    assert re.search(r"client_secret: \S{40,}", added.stdout)
    assert carnet("apps", "list").stdout.split("\t")[:3] == ["suivi", "confidential", "Suivi"]
    insecure = carnet(
        "apps", "add", "Bad", "--redirect-uri", "http://evil.example/cb", "--scope", "patient/Observation.rs"
    )
    assert insecure.exit_code == 1
    assert carnet("apps", "add", "Bad", "--kind", "other", "--scope", "patient/Observation.rs").exit_code == 1
    assert carnet("apps", "remove", "suivi").exit_code == 0
    assert carnet("apps", "list").stdout == ""
    assert carnet("apps", "remove", "suivi").exit_code == 1


def test_serve_with_workers_keeps_the_access_log(tmp_path: Path) -> None:
    """`carnet serve --workers 2` logs each request (method, path, status) from its worker processes."""
    port = free_port()
    log = tmp_path / "server.log"
    process = popen_serve(serve_env(tmp_path, port), log, "--workers", "2")
    try:
        wait_until_up(process, f"http://127.0.0.1:{port}/fhir/metadata", log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/fhir/Observation/abc?patient=secret").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=60)
    lines = log.read_text().splitlines()
    assert any(re.search(r"INFO carnet\.api GET /fhir/metadata 200 [\d.]+ms$", line) for line in lines)
    assert any(re.search(r"INFO carnet\.api GET /fhir/Observation/abc 401 [\d.]+ms$", line) for line in lines)
    assert not any("patient=secret" in line for line in lines)  # paths only, never the query
