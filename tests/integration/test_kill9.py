"""``kill -9`` of a real ``carnet serve`` under concurrent writes: no acknowledged write is ever lost.

Each round starts the server (the ``carnet serve`` command function, forked from a process that has
already imported Carnet: see ``tests/served.py``), lets :data:`WRITERS` threads create Observations
in their own records over HTTP, sends SIGKILL at a random moment 0 to 300 ms after the first write
of the round is acknowledged, and restarts it. Then every write answered ``201`` in that round must read back with its value, and
``carnet audit verify`` must exit 0 (the journal recomputes and matches its signed checkpoint). At
the end, a search finds every acknowledged write of every round again.

``make test`` runs :data:`SHORT_ROUNDS` rounds per backend; ``make test-long`` runs
:data:`LONG_ROUNDS` rounds on SQLite and prints the rate (see docs/testing.md for measured figures).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from carnet.api.auth import issue_token
from carnet.cli import app as carnet_cli
from carnet.settings import Settings
from carnet.store.engine import make_engine
from carnet.store.repository import SQLStore
from served import ForkedServer, free_port, serve_env

WRITERS = 3
SHORT_ROUNDS = 3
LONG_ROUNDS = 1_000
INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
#: How long the first write of a round may take to be acknowledged (a generous deadline, not a timing).
ACK_SECONDS = 60
#: How long the journal may take to get its first signed checkpoint (the server signs every second).
CHECKPOINT_SECONDS = 60


@dataclass(slots=True, kw_only=True)
class Writer:
    """One writer thread's record and what the server acknowledged to it."""

    patient_id: str
    headers: dict[str, str]
    #: Observation id → the value it was written with, for every ``201``.
    acked: dict[str, int] = field(default_factory=dict)
    #: Answers other than ``201`` (a write the server refused rather than lost).
    refused: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Tally:
    """What a run of rounds did."""

    rounds: int = 0
    acked: int = 0
    seconds: float = 0.0

    @property
    def per_minute(self) -> float:
        """Rounds per minute of wall-clock time."""
        return 60 * self.rounds / self.seconds if self.seconds else 0.0


def _observation(patient_id: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }


def _headers(key_dir: Path, identifier: str) -> dict[str, str]:
    claims = {"sub": f"patient:{uuid.uuid4().hex[:8]}", "kind": "patient", "identifier": identifier}
    token = issue_token(Settings(key_dir=key_dir), claims, now=datetime.now(UTC), lifetime=timedelta(hours=4))
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def _open_records(http: httpx.Client, url: str, key_dir: Path) -> list[Writer]:
    writers = []
    for _ in range(WRITERS):
        value = uuid.uuid4().hex
        headers = _headers(key_dir, f"{INS}|{value}")
        patient = {"resourceType": "Patient", "identifier": [{"system": INS, "value": value}]}
        response = http.post(f"{url}/Patient", json=patient, headers=headers)
        assert response.status_code == 201, response.text
        writers.append(Writer(patient_id=response.json()["id"], headers=headers))
    return writers


def _write_until(
    stop: threading.Event,
    first: threading.Event,
    url: str,
    writer: Writer,
    first_value: int,
    acked: dict[str, int],
) -> None:
    """Create Observations until ``stop``; keep those answered 201 in ``acked`` and set ``first``."""
    value = first_value
    with httpx.Client(timeout=10) as http:
        while not stop.is_set():
            value += 1
            try:
                response = http.post(
                    f"{url}/Observation", json=_observation(writer.patient_id, value), headers=writer.headers
                )
            except httpx.TransportError:
                continue  # the server is gone: this write was never acknowledged
            if response.status_code == 201:
                acked[response.json()["id"]] = value
                first.set()
            else:
                writer.refused.append(f"{response.status_code} {response.text[:200]}")


def _verify(env: dict[str, str]) -> tuple[int, str]:
    """Run ``carnet audit verify`` (in this process) against the server's store; return code and output."""
    result = CliRunner().invoke(carnet_cli, ["audit", "verify"], env=env)
    return result.exit_code, result.output


def _wait_for_a_checkpoint(env: dict[str, str]) -> None:
    """Wait until the running server has signed a first checkpoint of the journal."""
    engine = make_engine(
        env.get("CARNET_DATABASE_URL") or f"sqlite:///{env['CARNET_DATA_DIR']}/carnet.sqlite3"
    )
    try:
        deadline = time.monotonic() + CHECKPOINT_SECONDS
        while time.monotonic() < deadline:
            with SQLStore(engine).session() as session:
                if session.journal_checkpoints(0):
                    return
            time.sleep(0.2)
    finally:
        engine.dispose()
    pytest.fail(f"the server signed no checkpoint within {CHECKPOINT_SECONDS} s")


def _lost(http: httpx.Client, url: str, writer: Writer, acked: dict[str, int]) -> list[str]:
    """Read back each acknowledged write; list those missing or changed."""
    lost = []
    for oid, value in acked.items():
        response = http.get(f"{url}/Observation/{oid}", headers=writer.headers)
        if response.status_code != 200 or response.json()["valueQuantity"]["value"] != value:
            lost.append(f"Observation/{oid}: {response.status_code}")
    return lost


def _found_by_search(http: httpx.Client, url: str, writer: Writer) -> set[str]:
    """Every Observation id of a writer's record, by search, following the next links."""
    found: set[str] = set()
    next_url: str | None = f"{url}/Observation?patient={writer.patient_id}&_count=1000"
    while next_url:
        page = http.get(next_url, headers=writer.headers)
        assert page.status_code == 200, page.text
        bundle = page.json()
        found |= {entry["resource"]["id"] for entry in bundle.get("entry", [])}
        next_url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return found


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[ForkedServer]:
    """A forked ``carnet serve`` on a free port over ``database_url`` (not started)."""
    server = ForkedServer(serve_env(tmp_path, free_port(), database_url), tmp_path / "server.log")
    server.env["CARNET_CHECKPOINT_SECONDS"] = "1"
    try:
        yield server
    finally:
        server.stop()


def kill_rounds(server: ForkedServer, rounds: int, seed: int) -> Tally:
    """Run ``rounds`` kill -9 rounds against ``server``; fail on the first lost write or bad journal."""
    rng = random.Random(seed)
    key_dir = Path(server.env["CARNET_KEY_DIR"])
    server.start()
    tally = Tally()
    with httpx.Client(timeout=30) as http:
        writers = _open_records(http, server.url, key_dir)
        _wait_for_a_checkpoint(server.env)
        code, output = _verify(server.env)
        assert code == 0, output
        started = time.monotonic()
        for number in range(rounds):
            stop, first = threading.Event(), threading.Event()
            this_round: list[dict[str, int]] = [{} for _ in writers]
            threads = [
                threading.Thread(
                    target=_write_until,
                    args=(stop, first, server.url, writer, number * 100_000, acked),
                    daemon=True,
                )
                for writer, acked in zip(writers, this_round, strict=True)
            ]
            for thread in threads:
                thread.start()
            assert first.wait(timeout=ACK_SECONDS), (
                f"round {number}: no write acknowledged in {ACK_SECONDS} s"
            )
            time.sleep(rng.uniform(0, 0.3))
            server.kill()
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            server.start()
            lost = [
                problem
                for writer, acked in zip(writers, this_round, strict=True)
                for problem in _lost(http, server.url, writer, acked)
            ]
            assert lost == [], f"round {number}: acknowledged writes lost after kill -9: {lost[:10]}"
            code, output = _verify(server.env)
            assert code == 0, f"round {number}: carnet audit verify failed after kill -9:\n{output}"
            for writer, acked in zip(writers, this_round, strict=True):
                writer.acked |= acked
                tally.acked += len(acked)
            tally.rounds += 1
        tally.seconds = time.monotonic() - started
        for writer in writers:
            assert writer.refused == []
            missing = writer.acked.keys() - _found_by_search(http, server.url, writer)
            assert missing == set(), f"acknowledged writes missing from search: {sorted(missing)[:10]}"
    return tally


def test_kill9_loses_no_acknowledged_write(served: ForkedServer) -> None:
    """A few kill -9 rounds under concurrent writes lose no acknowledged write; the journal verifies."""
    tally = kill_rounds(served, SHORT_ROUNDS, seed=1)
    assert tally.rounds == SHORT_ROUNDS
    assert tally.acked > 0, "no write was acknowledged: the rounds tested nothing"


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_kill9_a_thousand_times(served: ForkedServer, capsys: pytest.CaptureFixture[str]) -> None:
    """1,000 kill -9 rounds under concurrent writes on SQLite lose no acknowledged write; the journal verifies."""
    tally = kill_rounds(served, LONG_ROUNDS, seed=2)
    assert tally.rounds == LONG_ROUNDS
    with capsys.disabled():
        print(
            f"\nkill -9: {tally.rounds} rounds in {tally.seconds:.0f} s ({tally.per_minute:.1f} rounds/min), "
            f"{tally.acked} acknowledged writes, 0 lost"
        )
