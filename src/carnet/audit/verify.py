"""Offline verification of the access journal and of one entry's proof.

Needs no key but the checkpoints' public verifier key: it reads the journal's rows, recomputes
every leaf and the tree, and checks them against signed checkpoints (``carnet audit verify``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from carnet.audit.checkpoint import Checkpoint, open_checkpoint
from carnet.domain.errors import AuditChainError
from carnet.domain.journal import Verdict, commitment, parse_leaf_input, verify_log
from carnet.domain.merkle import leaf_hash, verify_consistency, verify_inclusion
from carnet.services.ports import StoreSession

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardReport:
    """The verdict on one shard and the checkpoint it was checked against."""

    shard: int
    checkpoint: Checkpoint
    verdict: Verdict


def journal_origin(base: str, shard: int) -> str:
    """Return the checkpoint origin of a shard."""
    return base if shard == 0 else f"{base}/{shard}"


def verify_journal(
    session: StoreSession,
    verifier_key: str,
    origin: str,
    *,
    checkpoints: Mapping[int, bytes] | None = None,
    progress: Progress | None = None,
) -> list[ShardReport]:
    """Verify every shard of a stored journal against every signed checkpoint it has.

    ``checkpoints`` gives a checkpoint to trust per shard (e.g. one fetched earlier from the
    server and kept apart). Every stored checkpoint must be signed by ``verifier_key``, and the
    entries must hash to the root of each — the one given and every stored one, older or newer
    — so that a journal truncated or rewritten after the checkpoint kept apart fails too. When
    the entries verify, the stored node table is compared with the recomputed tree.

    Raises:
        AuditChainError: a checkpoint is missing, malformed or not signed by the verifier key.
    """
    reports: list[ShardReport] = []
    given = dict(checkpoints or {})
    shards = sorted(set(session.journal_shards()) | set(given))
    for shard in shards:
        name = journal_origin(origin, shard)
        opened: list[Checkpoint] = []
        for size, note in session.journal_checkpoints(shard):
            opened.append(checkpoint := open_checkpoint(note, verifier_key, origin=name))
            if checkpoint.size != size:
                raise AuditChainError(
                    f"The stored checkpoint of shard {shard} at size {size} says {checkpoint.size}."
                )
        if shard in given:
            opened.append(open_checkpoint(given[shard], verifier_key, origin=name))
        if not opened:
            raise AuditChainError(f"Shard {shard} has no checkpoint to verify against; issue one first.")
        largest = max(opened, key=lambda c: c.size)

        def node(level: int, idx: int, shard: int = shard) -> bytes | None:
            return session.journal_node(shard, level, idx)

        rows = session.journal_rows(shard)
        if progress is not None:
            rows = _counting(rows, progress)
        verdict = verify_log(
            shard,
            rows,
            largest.size,
            largest.root_hash,
            node,
            others=[(c.size, c.root_hash) for c in opened],
            stored_nodes=session.journal_node_rows(shard),
        )
        reports.append(ShardReport(shard=shard, checkpoint=largest, verdict=verdict))
    return reports


def _counting(rows: Any, progress: Progress) -> Any:
    for count, row in enumerate(rows, 1):
        if count % 1000 == 0:
            progress(1000)
        yield row


def verify_event_proof(parameters: Mapping[str, Any], verifier_key: str) -> Checkpoint:
    """Check an ``AuditEvent/$proof`` answer: signature, inclusion and (if given) the commitment.

    Raises:
        AuditChainError: any part does not verify, or the proof is signed by another key.
    """
    values: dict[str, Any] = {}
    path: list[bytes] = []
    for part in parameters.get("parameter") or []:
        name = part.get("name")
        value = next((v for k, v in part.items() if k.startswith("value")), None)
        if name == "path":
            path.append(_unb64(value))
        else:
            values[name] = value
    try:
        origin, note = str(values["origin"]), str(values["checkpoint"])
        index, size = int(values["leafIndex"]), int(values["treeSize"])
        leaf = _unb64(values["leafInput"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditChainError(
            "The proof lacks origin, checkpoint, leafIndex, treeSize or leafInput."
        ) from exc
    checkpoint = open_checkpoint(note, verifier_key, origin=origin)
    if checkpoint.size != size:
        raise AuditChainError("The proof's tree size is not the checkpoint's.")
    fields = parse_leaf_input(leaf)
    if fields.seq != index:
        raise AuditChainError("The leaf is not the entry at the proof's index.")
    verify_inclusion(leaf_hash(leaf), index, size, path, checkpoint.root_hash)
    has_content = "salt" in values or "content" in values
    if (
        has_content
        and commitment(_unb64(values.get("salt")), _unb64(values.get("content"))) != fields.commitment
    ):
        raise AuditChainError("The entry's content does not match the commitment in its leaf.")
    return checkpoint


def verify_checkpoint_consistency(first: bytes, second: bytes, proof: list[bytes], verifier_key: str) -> None:
    """Check that the second checkpoint extends the first (no rollback, no fork).

    Raises:
        AuditChainError: a signature or the proof does not verify, or the second is smaller.
    """
    old, new = open_checkpoint(first, verifier_key), open_checkpoint(second, verifier_key)
    if old.origin != new.origin:
        raise AuditChainError("The two checkpoints are of different journals.")
    verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise AuditChainError("A proof value is not base64 text.")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise AuditChainError("A proof value is not valid base64.") from exc
