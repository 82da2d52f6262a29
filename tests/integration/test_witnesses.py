"""Witnesses: two real `carnet witness serve` processes cosign the journal; a rollback is refused and caught."""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services, build_services, create_app
from carnet.audit.checkpoint import Checkpoint, open_checkpoint
from carnet.audit.cosignature import Cosignature, open_cosignature
from carnet.audit.signer import VERIFIER_FILE
from carnet.audit.verify import cosigners_of, journal_origin, verify_journal
from carnet.cli import app
from carnet.demo import SeededPatient, seed_population
from carnet.domain.errors import WitnessRefused
from carnet.domain.journal import entry_leaf_hash
from carnet.domain.merkle import CompactRange
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from carnet.store.tables import journal_heads, journal_nodes
from carnet.witness.app import create_witness_app
from carnet.witness.state import WitnessState, init_witness
from smtp_sink import free_port


@dataclasses.dataclass
class WitnessProcess:
    """A witness in its own process, with its own key and state directory."""

    directory: Path
    url: str
    verifier_key: str
    process: subprocess.Popen[bytes] | None = None


def _carnet(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "carnet", *args], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def _serve(witness: WitnessProcess, journal_key: str) -> None:
    """Make the witness follow the journal and start serving it on its port."""
    _carnet("witness", "trust", journal_key, "--dir", str(witness.directory))
    port = witness.url.rsplit(":", 1)[1]
    with (witness.directory / "serve.log").open("wb") as log:
        witness.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "carnet",
                "witness",
                "serve",
                "--dir",
                str(witness.directory),
                "--port",
                port,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(witness.url + "/", timeout=1) as answer:  # noqa: S310 - http only
                assert witness.verifier_key in answer.read().decode()
                return
        except OSError:
            if time.monotonic() > deadline or witness.process.poll() is not None:
                raise AssertionError((witness.directory / "serve.log").read_text()) from None
            time.sleep(0.1)


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[list[WitnessProcess]]:
    """Two initialised witnesses (keys made, ports chosen); started by the test, stopped here."""
    made = []
    for number in (1, 2):
        directory = tmp_path / f"witness{number}"
        key = _carnet("witness", "init", "--dir", str(directory), "--name", f"witness{number}.test/carnet")
        made.append(
            WitnessProcess(
                directory=directory, url=f"http://127.0.0.1:{free_port()}", verifier_key=key.strip()
            )
        )
    yield made
    for witness in made:
        if witness.process is not None:
            witness.process.terminate()
            witness.process.wait(timeout=10)


def _grow(services: Services, writes: int) -> None:
    """Append journal entries: a patient opens a record and adds observations."""
    ins = Identifier(system="urn:oid:1.2.250.1.213.1.4.10", value=uuid.uuid4().hex[:15])
    principal = Principal(kind=ActorKind.PATIENT, subject=f"pat:{ins.value}", identifier=ins)
    patient = {"resourceType": "Patient", "identifier": [{"system": ins.system, "value": ins.value}]}
    patient_id = services.records.records(principal).create(patient).stored.resource_id
    records = services.records.records(dataclasses.replace(principal, patient_id=patient_id))
    for value in range(writes):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "poids"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": value},
        }
        records.create(observation)
    services.journal.issue_checkpoints()


def _size(services: Services) -> int:
    with services.store.session() as session:
        latest = session.latest_checkpoint(0)
    assert latest is not None
    return latest[0]


def _roll_back(services: Services, keep: int) -> None:
    """Do what an operator with database access could: truncate, rebuild nodes and head, drop checkpoints."""
    with services.store.session() as session:
        rows = list(session.journal_rows(0))[:keep]
    compact = CompactRange()
    nodes = [node for row in rows for node in compact.append(entry_leaf_hash(row))]
    with services.store.engine.begin() as connection:
        connection.execute(text("DELETE FROM journal_entries WHERE seq >= :keep"), {"keep": keep})
        connection.execute(text("DELETE FROM journal_nodes"))
        connection.execute(
            insert(journal_nodes),
            [
                {
                    "log_key": services.store.logs.key(0),
                    "shard": 0,
                    "level": n.level,
                    "idx": n.index,
                    "digest": n.digest,
                }
                for n in nodes
            ],
        )
        connection.execute(
            update(journal_heads)
            .where(journal_heads.c.shard == 0)
            .values(size=keep, peaks=b"".join(compact.peaks))
        )
        connection.execute(text("DELETE FROM journal_checkpoints"))
        connection.execute(text("DELETE FROM journal_cosignatures"))


def _verify(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_WITNESSES": ",".join(f"{url} {key}" for url, key in settings.witnesses),
    }
    result = CliRunner().invoke(app, ["audit", "verify", "--database", settings.database_url, *args], env=env)
    return result.exit_code, result.output


def _access_page(settings: Settings, services: Services, patient: SeededPatient) -> str:
    """Sign in to the patient portal as ``patient`` and return the access history page."""
    client = TestClient(create_app(settings, services), base_url="http://testserver")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    identifier = f"{patient.ins_system}|{patient.ins_value}"
    data = {"csrf_token": token.group(1), "kind": "patient", "identifier": identifier}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 303
    page = client.get("/patient/access")
    assert page.status_code == 200
    return page.text


# One log followed through growth and a rollback: on Citus the journal has one log per record
# shard and these records land in several (each log's witnessing is test_every_shard_is_witnessed's).
@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_two_witnesses_cosign_growth_and_refuse_a_rollback(
    settings: Settings, witnesses: list[WitnessProcess]
) -> None:
    """Both witnesses cosign each new checkpoint (once they are up); after the operator truncates and rebuilds the log, they refuse (409, then 422) and `audit verify` fails with no checkpoint kept."""
    settings = dataclasses.replace(settings, witnesses=tuple((w.url, w.verifier_key) for w in witnesses))
    services = build_services(settings)
    try:
        journal_key = (settings.key_dir / VERIFIER_FILE).read_text().strip()
        keys = [w.verifier_key for w in witnesses]
        _grow(services, 4)
        down = services.journal.publish()  # not started yet: nothing stored, tried again next pass
        assert [(p.cosigned, p.status) for p in down] == [(False, None), (False, None)]
        assert "unreachable" in down[0].message
        for witness in witnesses:
            _serve(witness, journal_key)

        first = services.journal.publish()
        assert [(p.witness, p.cosigned) for p in first] == [
            ("witness1.test/carnet", True),
            ("witness2.test/carnet", True),
        ]
        assert sorted(cosigners_of(services.journal.checkpoint(), keys)) == [
            "witness1.test/carnet",
            "witness2.test/carnet",
        ]
        patient = seed_population(services.records, patients=1, seed=2026)[0]
        _grow(services, 6)  # the next checkpoints come with a consistency proof from the last one
        assert [p.cosigned for p in services.journal.publish()] == [True, True]
        portal = _access_page(settings, services, patient)
        assert "est contresigné par 2 témoins indépendants (2 au moins sont requis)" in portal
        assert services.journal.publish() == []  # nothing new: nothing sent
        witnessed = _size(services)
        code, output = _verify(settings)
        assert (code, f"checkpoint {witnessed} witnessed by 2 (quorum 2)" in output) == (0, True), output

        _roll_back(services, witnessed - 8)
        _grow(services, 1)  # smaller than what the witnesses saw: they answer with their size
        refused = services.journal.publish()
        assert [(p.cosigned, p.status) for p in refused] == [(False, 409), (False, 409)]
        code, output = _verify(settings, "--offline")  # the stored cosignatures alone fail it too
        assert (code, "NOT WITNESSED: no checkpoint of shard 0 carries 2" in output) == (1, True), output
        _grow(services, 10)  # larger: the consistency proof from their size cannot verify
        refused = services.journal.publish()
        assert [(p.cosigned, p.status) for p in refused] == [(False, 422), (False, 422)]
        assert services.journal.publish() == []  # a refused checkpoint is not sent again each tick
        for witness in witnesses:  # each kept the log-signed checkpoints it refused, as evidence
            with urllib.request.urlopen(witness.url + "/", timeout=5) as answer:  # noqa: S310 - http only
                origin, size, kept = answer.read().decode().splitlines()[-1].split(" ")
            assert (origin, int(size), int(kept) >= 2) == (settings.journal_origin, witnessed, True)

        portal = _access_page(settings, services, patient)
        assert "Attention : le dernier état du journal n'est pas contresigné" in html.unescape(portal)
        code, output = _verify(settings)
        assert code == 1, output
        assert (
            f"NOT WITNESSED: the journal does not match the checkpoint of size {witnessed} cosigned by"
            in output
        )
        assert "FIRST BAD ENTRY" in output
    finally:
        services.store.engine.dispose()


class InProcessWitness:
    """The witness application served in process, behind the same interface as HTTPWitness."""

    def __init__(self, client: TestClient, verifier_key: str) -> None:
        self.client = client
        self.verifier_key = verifier_key
        self.name = verifier_key.split("+", 1)[0]

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: bytes) -> str:
        """Submit over the in-process client; return the verified cosignature line."""
        lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
        answer = self.client.post("/add-checkpoint", content="".join(lines).encode() + note)
        if answer.status_code != 200:
            raise WitnessRefused(answer.text, status=answer.status_code)
        return open_cosignature(note + answer.content, self.verifier_key).line

    def latest(self, origin: str, log_key: str) -> tuple[Checkpoint, Cosignature] | None:
        """Return the witness's latest cosigned checkpoint of ``origin``, verified."""
        answer = self.client.get("/latest", params={"origin": origin})
        if answer.status_code == 404:
            return None
        return open_checkpoint(answer.content, log_key, origin=origin), open_cosignature(
            answer.content, self.verifier_key
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_shard_is_witnessed(settings: Settings, tmp_path: Path) -> None:
    """With two journal shards, each shard's checkpoints are cosigned under its own origin and verify as witnessed."""
    settings = dataclasses.replace(settings, journal_shards=2)
    services = build_services(settings)
    try:
        key = init_witness(tmp_path / "witness", "witness.test/shards")
        state = WitnessState(tmp_path / "witness")
        journal_key = (settings.key_dir / VERIFIER_FILE).read_text().strip()
        for shard in (0, 1):
            state.trust(journal_origin(settings.journal_origin, shard), journal_key)
        witness = InProcessWitness(TestClient(create_witness_app(state)), key)
        services.journal.witnesses = (witness,)
        for _ in range(6):  # records land in both shards
            _grow(services, 1)
        published = services.journal.publish()
        assert sorted((p.shard, p.cosigned) for p in published) == [(0, True), (1, True)]
        with services.store.session() as session:
            reports = verify_journal(
                session, journal_key, settings.journal_origin, witnesses=[witness], now=datetime.now(UTC)
            )
        assert [(r.shard, r.ok, r.witnessing is not None and r.witnessing.size) for r in reports] == [
            (0, True, reports[0].checkpoint.size),
            (1, True, reports[1].checkpoint.size),
        ]
        state.close()
    finally:
        services.store.engine.dispose()
