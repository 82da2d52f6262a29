"""The witness (C2SP tlog-witness) and its cosignatures (C2SP tlog-cosignature), in process."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from carnet.audit.checkpoint import generate_signer, parse_signer_key, sign_checkpoint
from carnet.audit.cosignature import cosign, generate_cosigner, open_cosignature, parse_cosigner_key
from carnet.domain.errors import AuditChainError
from carnet.domain.merkle import consistency_proof, leaf_hash, root_hash
from carnet.witness.app import create_witness_app
from carnet.witness.state import WitnessState, init_witness

ORIGIN = "carnet.test/journal"
LEAVES = [leaf_hash(bytes([i])) for i in range(40)]
SIGNER, LOG_KEY = generate_signer(ORIGIN)
_, LOG_SEED = parse_signer_key(SIGNER)


def _checkpoint(size: int, *, leaves: list[bytes] = LEAVES, seed: bytes = LOG_SEED) -> bytes:
    return sign_checkpoint(ORIGIN, size, root_hash(leaves[:size]), seed, ORIGIN)


def _body(old: int, proof: list[bytes], note: bytes) -> bytes:
    lines = [f"old {old}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return "".join(lines).encode() + note


@pytest.fixture
def witness(tmp_path: Path) -> tuple[TestClient, str]:
    """A witness following ORIGIN, with the clock at 1,700,000,000, and its verifier key."""
    key = init_witness(tmp_path, "witness.test/w1")
    state = WitnessState(tmp_path)
    state.trust(ORIGIN, LOG_KEY)
    return TestClient(create_witness_app(state, clock=lambda: 1_700_000_000.0)), key


def test_a_cosignature_is_c2sp_cosignature_v1() -> None:
    """The line carries key ID (type 0x04), big-endian timestamp and an Ed25519 signature of the v1 message."""
    signer, verifier = generate_cosigner("witness.test/w1")
    name, seed = parse_cosigner_key(signer)
    note = _checkpoint(5)
    text = note.decode().split("\n\n")[0] + "\n"
    line = cosign(text, seed, name, 1_679_315_147)
    raw = base64.b64decode(line.split(" ")[2])
    public = base64.b64decode(verifier.split("+", 2)[2])
    assert public[0] == 0x04
    assert raw[:4] == hashlib.sha256(b"witness.test/w1\n\x04" + public[1:]).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1_679_315_147
    assert len(raw) == 4 + 8 + 64
    seen = open_cosignature(note + line.encode(), verifier)
    assert (seen.witness, seen.timestamp, seen.checkpoint.size) == ("witness.test/w1", 1_679_315_147, 5)


def test_a_tampered_or_foreign_cosignature_is_refused() -> None:
    """A flipped bit, another checkpoint or another witness's key: refused."""
    signer, verifier = generate_cosigner("witness.test/w1")
    name, seed = parse_cosigner_key(signer)
    note = _checkpoint(5)
    line = cosign(note.decode().split("\n\n")[0] + "\n", seed, name, 7)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[-1] ^= 1
    flipped = f"— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(AuditChainError):
        open_cosignature(note + flipped.encode(), verifier)
    with pytest.raises(AuditChainError):
        open_cosignature(_checkpoint(6) + line.encode(), verifier)
    _, other = generate_cosigner("witness.test/w1")
    with pytest.raises(AuditChainError):
        open_cosignature(note + line.encode(), other)


def test_the_witness_cosigns_growth_and_remembers_it(witness: tuple[TestClient, str], tmp_path: Path) -> None:
    """old 0 → cosigned; then growth with a consistency proof → cosigned; /latest returns it; a restart keeps it."""
    client, key = witness
    answer = client.post("/add-checkpoint", content=_body(0, [], _checkpoint(10)))
    assert answer.status_code == 200, answer.text
    assert open_cosignature(_checkpoint(10) + answer.content, key).timestamp == 1_700_000_000
    proof = consistency_proof(LEAVES, 10, 25)
    answer = client.post("/add-checkpoint", content=_body(10, proof, _checkpoint(25)))
    assert answer.status_code == 200, answer.text
    again = client.post("/add-checkpoint", content=_body(25, [], _checkpoint(25)))
    assert again.status_code == 200  # the same tree again is consistent with itself
    latest = client.get("/latest", params={"origin": ORIGIN})
    assert open_cosignature(latest.content, key).checkpoint.size == 25
    restarted = TestClient(create_witness_app(WitnessState(tmp_path)))
    stale = restarted.post("/add-checkpoint", content=_body(0, [], _checkpoint(30)))
    assert (stale.status_code, stale.text, stale.headers["content-type"]) == (409, "25\n", "text/x.tlog.size")


def test_the_witness_answers_each_refusal_with_its_status(
    witness: tuple[TestClient, str], tmp_path: Path
) -> None:
    """404 unknown log, 403 another key, 400 malformed or old > size, 409 size mismatch or fork, 422 bad proof; log-signed refusals are kept."""
    client, _ = witness
    assert client.post("/add-checkpoint", content=_body(0, [], _checkpoint(10))).status_code == 200
    other_signer, _ = generate_signer("other.test/log")
    _, other_seed = parse_signer_key(other_signer)
    unknown = sign_checkpoint("other.test/log", 3, root_hash(LEAVES[:3]), other_seed, "other.test/log")
    forged_leaves = [leaf_hash(b"forged"), *LEAVES[1:]]
    cases = {
        "unknown log": (_body(0, [], unknown), 404),
        "another key": (_body(10, [], _checkpoint(12, seed=other_seed)), 403),
        "malformed": (b"old 01\n\n" + _checkpoint(12), 400),
        "no blank line": (b"old 10\n", 400),
        "old above size": (_body(20, [], _checkpoint(12)), 400),
        "old size mismatch": (_body(5, consistency_proof(LEAVES, 5, 12), _checkpoint(12)), 409),
        "fork at the same size": (_body(10, [], _checkpoint(10, leaves=forged_leaves)), 409),
        "rewritten log": (
            _body(10, consistency_proof(forged_leaves, 10, 12), _checkpoint(12, leaves=forged_leaves)),
            422,
        ),
        "proof of other sizes": (_body(10, consistency_proof(LEAVES, 9, 12), _checkpoint(12)), 422),
    }
    for name, (body, status) in cases.items():
        assert (name, client.post("/add-checkpoint", content=body).status_code) == (name, status)
    assert client.get("/latest", params={"origin": "other.test/log"}).status_code == 404
    kept = WitnessState(tmp_path).evidence(ORIGIN)  # signed by the log yet inconsistent: evidence
    assert [status for _, status, _, _ in kept] == [409, 409, 422, 422]
    assert kept[2][3] == cases["rewritten log"][0]
    # Nothing refused moved the witness: it still extends its size-10 view.
    proof = consistency_proof(LEAVES, 10, 12)
    assert client.post("/add-checkpoint", content=_body(10, proof, _checkpoint(12))).status_code == 200
