"""``carnet audit verify`` and its core against 1,000 random corruptions of a real journal."""

from __future__ import annotations

import base64
import dataclasses
import random
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from carnet.api.app import Services
from carnet.audit.checkpoint import generate_signer, parse_signer_key, sign_checkpoint
from carnet.audit.signer import VERIFIER_FILE
from carnet.cli import app
from carnet.domain.errors import AuditChainError, RecordShredded
from carnet.domain.journal import StoredEntry, verify_log
from carnet.domain.merkle import leaf_hash, verify_inclusion
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from carnet.store.tables import journal_nodes

MUTATIONS = 1_000


def _fill(services: Services, observations: int = 30, patient_id: str | None = None) -> str:
    """Write a real journal: a patient opens a record (or goes on in ``patient_id``'s), adds observations and reads them back."""
    ins = Identifier(system="urn:oid:1.2.250.1.213.1.4.10", value=uuid.uuid4().hex[:15])
    principal = Principal(kind=ActorKind.PATIENT, subject="pat:m", identifier=ins)
    if patient_id is None:
        records = services.records.records(principal)
        patient = {"resourceType": "Patient", "identifier": [{"system": ins.system, "value": ins.value}]}
        patient_id = records.create(patient).stored.resource_id
    records = services.records.records(dataclasses.replace(principal, patient_id=patient_id))
    for value in range(observations):
        made = records.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "poids"},
                "subject": {"reference": f"Patient/{patient_id}"},
                "valueQuantity": {"value": value},
            }
        ).stored
        records.read("Observation", made.resource_id)
    services.journal.issue_checkpoints()
    return patient_id


def _journal(services: Services) -> tuple[list[StoredEntry], dict[tuple[int, int], bytes], int, bytes]:
    with services.store.session() as session:
        rows = list(session.journal_rows(0))
        size, note = session.latest_checkpoint(0) or (0, b"")
    with services.store.engine.connect() as connection:
        nodes = {
            (r.level, r.idx): bytes(r.digest)
            for r in connection.execute(select(journal_nodes).where(journal_nodes.c.shard == 0))
        }
    root = base64.b64decode(note.decode().splitlines()[2])
    return rows, nodes, size, root


def _flip(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    return bytes(raw)


def _mutate(rows: list[StoredEntry], size: int, rng: random.Random) -> tuple[str, list[StoredEntry]]:
    """Apply one random corruption; return its name and the rows as a reader would get them."""
    rows = list(rows)
    kind = rng.choice(["byte", "delete", "reorder", "truncate", "forge", "duplicate"])
    i = rng.randrange(size)
    if kind == "byte":
        row = rows[i]
        field = rng.choice(["commitment", "sealed", "patient_id", "recorded_at", "seq", "shard"])
        if field in ("commitment", "sealed"):
            row = dataclasses.replace(row, **{field: _flip(getattr(row, field), rng)})
        elif field == "patient_id":
            chars = list(row.patient_id)
            at = rng.randrange(len(chars))
            chars[at] = "x" if chars[at] != "x" else "y"
            row = dataclasses.replace(row, patient_id="".join(chars))
        elif field == "recorded_at":
            row = dataclasses.replace(
                row, recorded_at=row.recorded_at + timedelta(microseconds=rng.randint(1, 10**6))
            )
        elif field == "seq":
            row = dataclasses.replace(row, seq=rng.choice([v for v in range(size + 3) if v != i]))
        else:
            row = dataclasses.replace(row, shard=1)
        kind = f"byte:{field}"
        rows[i] = row
    elif kind == "delete":
        del rows[i]
    elif kind == "reorder":
        j = rng.choice([v for v in range(size) if v != i])
        rows[i], rows[j] = dataclasses.replace(rows[j], seq=i), dataclasses.replace(rows[i], seq=j)
    elif kind == "truncate":
        rows = rows[:i]
    elif kind == "forge":
        forged = dataclasses.replace(rows[i], commitment=bytes(rng.randrange(256) for _ in range(32)))
        rows = rows[:i] + [forged] + [dataclasses.replace(r, seq=r.seq + 1) for r in rows[i:]]
    else:
        copy = dataclasses.replace(rows[rng.randrange(size)], seq=i)
        rows = rows[:i] + [copy] + [dataclasses.replace(r, seq=r.seq + 1) for r in rows[i:]]
    # What ``journal_rows(0)`` returns: this shard's rows, by index (ties in stored order).
    visible = sorted((r for r in rows if r.shard == 0), key=lambda r: r.seq)
    return kind, visible


def _first_difference(original: list[StoredEntry], mutated: list[StoredEntry]) -> int:
    for index, (a, b) in enumerate(zip(original, mutated, strict=False)):
        if a != b:
            return index
    return min(len(original), len(mutated))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_random_corruption_is_found_at_its_index(services: Services) -> None:
    """1,000 random corruptions (bytes, deletions, reorderings, truncations, forgeries): all found, each at its index."""
    _fill(services)
    rows, nodes, size, root = _journal(services)
    assert size == len(rows) >= 60
    assert verify_log(0, rows, size, root, lambda level, idx: nodes.get((level, idx))).ok
    rng = random.Random(5)
    kinds: dict[str, int] = {}
    for _ in range(MUTATIONS):
        kind, mutated = _mutate(rows, size, rng)
        expected = _first_difference(rows, mutated)
        verdict = verify_log(0, mutated, size, root, lambda level, idx: nodes.get((level, idx)))
        assert (kind, verdict.first_bad, verdict.exact) == (kind, expected, True)
        kinds[kind] = kinds.get(kind, 0) + 1
    assert len(kinds) == 11  # every kind of corruption was tried


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"CARNET_DATA_DIR": str(settings.data_dir), "CARNET_KEY_DIR": str(settings.key_dir)}
    result = CliRunner().invoke(app, ["audit", "verify", "--database", settings.database_url, *args], env=env)
    return result.exit_code, result.output


def test_audit_verify_names_the_first_bad_entry_of_the_database(
    services: Services, settings: Settings
) -> None:
    """`carnet audit verify` passes on a sound journal and names the first bad index after each real corruption."""
    _fill(services, observations=12)
    key = str(settings.key_dir / VERIFIER_FILE)
    code, output = _cli(settings, "--key", key)
    assert (code, "FIRST BAD" in output) == (0, False), output
    corruptions = [
        ("UPDATE journal_entries SET sealed = commitment WHERE seq = 7", 7),
        ("DELETE FROM journal_entries WHERE seq = 11", 11),
        ("UPDATE journal_entries SET seq = -seq - 100 WHERE seq IN (3, 5)", 3),
        ("DELETE FROM journal_entries WHERE seq >= 20", 20),
        ("UPDATE journal_entries SET patient_id = 'forged' WHERE seq = 2", 2),
    ]
    with services.store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE journal_backup AS SELECT * FROM journal_entries"))
    for statement, index in corruptions:
        with services.store.engine.begin() as connection:
            connection.execute(text(statement))
            if "-seq - 100" in statement:  # finish the swap: 3 ↔ 5
                connection.execute(text("UPDATE journal_entries SET seq = 5 WHERE seq = -103"))
                connection.execute(text("UPDATE journal_entries SET seq = 3 WHERE seq = -105"))
        code, output = _cli(settings, "--key", key)
        assert (code, f"FIRST BAD ENTRY {index}:" in output) == (1, True), (statement, output)
        with services.store.engine.begin() as connection:
            connection.execute(text("DELETE FROM journal_entries"))
            connection.execute(text("INSERT INTO journal_entries SELECT * FROM journal_backup"))
    assert _cli(settings, "--key", key)[0] == 0


def test_audit_verify_refuses_a_checkpoint_of_another_key(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    """A checkpoint signed by another key stops verification (exit 2); an older checkpoint kept apart still verifies, with the newer stored ones."""
    _fill(services, observations=3)
    kept = tmp_path / "checkpoint.txt"
    kept.write_bytes(services.journal.checkpoint())
    _fill(services, observations=2)
    latest = int(services.journal.checkpoint().decode().splitlines()[1])
    key = str(settings.key_dir / VERIFIER_FILE)
    code, output = _cli(settings, "--key", key, "--checkpoint", str(kept))
    assert code == 0, output
    assert f"{latest} entries verified (checkpoint size {latest})" in output
    signer, _ = generate_signer(settings.journal_origin)
    name, seed = parse_signer_key(signer)
    lines = kept.read_text().splitlines()
    forged = tmp_path / "forged.txt"
    forged.write_bytes(sign_checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2]), seed, name))
    code, output = _cli(settings, "--key", key, "--checkpoint", str(forged))
    assert code == 2, output


def test_a_shredded_record_leaves_the_journal_verifiable_and_unreadable(
    services: Services, settings: Settings
) -> None:
    """Shredding a patient: `audit verify` still passes, and that patient's entries can no longer be opened."""
    patient_id = _fill(services, observations=3)
    _fill(services, observations=2)  # another record, still readable
    admin = Principal(kind=ActorKind.ADMIN, subject="admin:test")
    services.key_service.shred(admin, patient_id)
    services.journal.issue_checkpoints()
    code, output = _cli(settings, "--key", str(settings.key_dir / VERIFIER_FILE))
    assert code == 0, output
    with services.store.session() as session, pytest.raises(RecordShredded):
        services.records.vault.key(session, patient_id, services.records.clock())
    with services.store.session() as session:
        rows = session.journal_of(patient_id, limit=1000)
    assert len(rows) >= 7  # every entry is still there, sealed under a key that no longer exists


def _execute(services: Services, *statements: str) -> None:
    with services.store.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def test_a_truncation_after_the_kept_checkpoint_fails_against_the_newer_stored_ones(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    """`verify --checkpoint OLD` also checks every newer stored checkpoint: a truncation after OLD fails."""
    patient_id = _fill(services, observations=3)
    with services.store.engine.connect() as connection:
        # The record's log (on Citus, the log of its shard: not necessarily log 0).
        log = connection.execute(
            text("SELECT DISTINCT shard FROM journal_entries WHERE patient_id = :p"), {"p": patient_id}
        ).scalar_one()
    kept = tmp_path / "old.txt"
    kept.write_bytes(services.journal.checkpoint(log))
    old_size = int(kept.read_text().splitlines()[1])
    _fill(services, observations=5, patient_id=patient_id)  # the same record: the same log grows
    key = str(settings.key_dir / VERIFIER_FILE)
    assert _cli(settings, "--key", key, "--checkpoint", str(kept))[0] == 0
    with services.store.engine.begin() as connection:
        connection.execute(
            text("DELETE FROM journal_entries WHERE shard = :s AND seq >= :n"), {"s": log, "n": old_size + 4}
        )
    code, output = _cli(settings, "--key", key, "--checkpoint", str(kept))
    assert (code, f"FIRST BAD ENTRY {old_size + 4}:" in output) == (1, True), output


def test_a_deleted_and_renumbered_entry_is_named_exactly(services: Services, settings: Settings) -> None:
    """Deleting entry 5 and renumbering the rest is reported at index 5, not at the journal's end."""
    _fill(services, observations=8)
    _execute(
        services,
        "DELETE FROM journal_entries WHERE seq = 5",
        "UPDATE journal_entries SET seq = -(seq - 1) WHERE seq > 5",
        "UPDATE journal_entries SET seq = -seq WHERE seq < 0",
    )
    code, output = _cli(settings, "--key", str(settings.key_dir / VERIFIER_FILE))
    assert (code, "FIRST BAD ENTRY 5:" in output) == (1, True), output


def test_an_edited_or_missing_tree_node_is_detected(services: Services, settings: Settings) -> None:
    """An edited stored Merkle node (which breaks proofs) fails verification, naming the node; so does a deleted one."""
    patient_id = _fill(services, observations=8)
    key = str(settings.key_dir / VERIFIER_FILE)
    with services.store.session() as session:
        log = services.journal.log_of(session, patient_id)  # 0 here, the record shard's on Citus
        row = session.journal_entry(log, 10)
        assert row is not None
        services.journal.prove(session, row)  # proves while the node table is sound
    with services.store.engine.begin() as connection:
        # Both sides name the log by its key: one shard on Citus, the same rows elsewhere.
        connection.execute(
            text(
                "UPDATE journal_nodes SET digest = (SELECT digest FROM journal_nodes AS o "
                "WHERE o.log_key = :k AND o.shard = :s AND o.level = 1 AND o.idx = 0) "
                "WHERE log_key = :k AND shard = :s AND level = 1 AND idx = 4"
            ),
            {"k": services.store.logs.key(log), "s": log},
        )
    with services.store.session() as session:
        row = session.journal_entry(log, 10)
        assert row is not None
        proof = services.journal.prove(session, row)
    root = base64.b64decode(proof.checkpoint.decode().splitlines()[2])
    with pytest.raises(AuditChainError):
        verify_inclusion(leaf_hash(proof.leaf_input), proof.index, proof.size, proof.proof, root)
    code, output = _cli(settings, "--key", key)
    assert (code, "BAD TREE NODE 1/4 (entries 8-9)" in output) == (1, True), output
    _execute(services, f"DELETE FROM journal_nodes WHERE shard = {log} AND level = 1 AND idx = 4")  # noqa: S608
    code, output = _cli(settings, "--key", key)
    assert (code, "BAD TREE NODE 1/4 (entries 8-9): missing" in output) == (1, True), output
