"""Offline verification of the access journal and of one entry's proof.

Needs no key but the checkpoints' public verifier key: it reads the journal's rows, recomputes
every leaf and the tree, and checks them against signed checkpoints (``carnet audit verify``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from carnet.audit.checkpoint import Checkpoint, open_checkpoint
from carnet.audit.cosignature import Cosignature, open_cosignature
from carnet.domain.errors import AuditChainError
from carnet.domain.journal import Verdict, commitment, parse_leaf_input, verify_log
from carnet.domain.merkle import leaf_hash, verify_consistency, verify_inclusion
from carnet.services.ports import StoreSession

Progress = Callable[[int], None]


#: How long a new checkpoint may wait for its cosignatures before verification calls it unwitnessed.
WITNESS_GRACE = timedelta(minutes=5)


class WitnessView(Protocol):
    """A witness as the verifier asks it (``carnet.audit.witness_client.HTTPWitness``)."""

    name: str
    verifier_key: str

    def latest(self, origin: str, log_key: str) -> tuple[Checkpoint, Cosignature] | None:
        """Return the latest checkpoint of ``origin`` the witness cosigned, verified, or None."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Witnessing:
    """Whether a shard's journal head is witnessed.

    ``size`` is the largest checkpoint cosigned by a quorum (``None``: none is), ``cosigners``
    the witnesses who cosigned it; ``problems`` says what is wrong (empty when all is well).
    """

    quorum: int
    size: int | None = None
    cosigners: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    pending: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardReport:
    """The verdict on one shard, the largest checkpoint it was checked against, its witnessing."""

    shard: int
    checkpoint: Checkpoint
    verdict: Verdict
    witnessing: Witnessing | None = field(default=None)

    @property
    def ok(self) -> bool:
        """Tell whether the entries verified and, with witnesses, the head is witnessed."""
        return self.verdict.ok and (self.witnessing is None or not self.witnessing.problems)


def cosigners_of(note: bytes, witness_keys: Sequence[str]) -> list[str]:
    """Return the names of the witnesses (of ``witness_keys``) whose cosignature on ``note`` verifies."""
    names: list[str] = []
    for key in witness_keys:
        try:
            names.append(open_cosignature(note, key).witness)
        except AuditChainError:
            continue
    return names


def journal_origin(base: str, shard: int) -> str:
    """Return the checkpoint origin of a shard."""
    return base if shard == 0 else f"{base}/{shard}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadStatus:
    """Whether a journal's head is witnessed, as the patient portal shows it.

    ``size`` and ``cosigners`` are those of the newest checkpoint cosigned by ``quorum`` known
    witnesses (``size`` is ``None`` when none of the recent ones is); ``late`` tells that newer
    checkpoints have waited for their cosignatures longer than :data:`WITNESS_GRACE`.
    """

    quorum: int
    size: int | None = None
    cosigners: int = 0
    late: bool = False

    @property
    def witnessed(self) -> bool:
        """Tell whether the head is witnessed (a quorum cosigned it, nothing newer is overdue)."""
        return self.size is not None and not self.late


def head_status(
    recent: Sequence[tuple[int, datetime, bytes]], witness_keys: Sequence[str], quorum: int, now: datetime
) -> HeadStatus:
    """Check the cosignatures of a journal's recent checkpoints (newest first) against the known witnesses."""
    late = False
    for size, issued, note in recent:
        names = cosigners_of(note, witness_keys)
        if len(names) >= quorum:
            return HeadStatus(quorum=quorum, size=size, cosigners=len(names), late=late)
        late = late or now - issued > WITNESS_GRACE
    return HeadStatus(quorum=quorum, late=True)


def verify_journal(
    session: StoreSession,
    verifier_key: str,
    origin: str,
    *,
    checkpoints: Mapping[int, bytes] | None = None,
    progress: Progress | None = None,
    witnesses: Sequence[WitnessView] = (),
    quorum: int = 0,
    ask_witnesses: bool = True,
    now: datetime | None = None,
) -> list[ShardReport]:
    """Verify every shard of a stored journal against every signed checkpoint it has.

    ``checkpoints`` gives a checkpoint to trust per shard (e.g. one fetched earlier from the
    server and kept apart). Every stored checkpoint must be signed by ``verifier_key``, and the
    entries must hash to the root of each — the one given and every stored one, older or newer
    — so that a journal truncated or rewritten after the checkpoint kept apart fails too. When
    the entries verify, the stored node table is compared with the recomputed tree.

    With ``witnesses``, each is asked for the latest checkpoint it cosigned (unless
    ``ask_witnesses`` is false), which the entries must match too: a journal rolled back or
    rewritten behind the witnesses' backs fails without any checkpoint kept locally. And the
    latest stored checkpoint must carry ``quorum`` valid cosignatures (a checkpoint issued less
    than :data:`WITNESS_GRACE` before ``now`` may still be waiting for them).

    Raises:
        AuditChainError: a checkpoint is missing, malformed or not signed by the verifier key.
    """
    reports: list[ShardReport] = []
    given = dict(checkpoints or {})
    shards = sorted(set(session.journal_shards()) | set(given))
    for shard in shards:
        name = journal_origin(origin, shard)
        opened: list[Checkpoint] = []
        cosigned: dict[tuple[int, bytes], set[str]] = {}
        stored = session.journal_checkpoints(shard)
        for size, note in stored:
            opened.append(checkpoint := open_checkpoint(note, verifier_key, origin=name))
            if checkpoint.size != size:
                raise AuditChainError(
                    f"The stored checkpoint of shard {shard} at size {size} says {checkpoint.size}."
                )
        # Newest first, down to the first checkpoint a quorum cosigned: older ones do not matter.
        for (size, note), checkpoint in zip(reversed(stored), reversed(opened), strict=True):
            if not witnesses:
                break
            lines = "".join(session.cosignatures(shard, size).values()).encode()
            names = cosigners_of(note + lines, [w.verifier_key for w in witnesses])
            cosigned[(size, checkpoint.root_hash)] = set(names)
            if len(names) >= (quorum or len(witnesses)):
                break
        problems: list[str] = []
        for witness in witnesses if ask_witnesses else ():
            try:
                seen = witness.latest(name, verifier_key)
            except (OSError, AuditChainError) as error:
                problems.append(f"witness {witness.name}: {error}")
                continue
            if seen is not None:
                opened.append(seen[0])
                cosigned.setdefault((seen[0].size, seen[0].root_hash), set()).add(witness.name)
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
        witnessing = None
        if witnesses:
            if verdict.first_bad is not None:
                problems.extend(
                    f"the journal does not match the checkpoint of size {size} cosigned by "
                    f"{', '.join(sorted(names))}: it was rolled back or rewritten since"
                    for (size, _), names in sorted(cosigned.items())
                    if names and size > verdict.first_bad
                )
            witnessing = _witnessing(session, shard, cosigned, quorum or len(witnesses), problems, now)
        reports.append(ShardReport(shard=shard, checkpoint=largest, verdict=verdict, witnessing=witnessing))
    return reports


def _witnessing(
    session: StoreSession,
    shard: int,
    cosigned: Mapping[tuple[int, bytes], set[str]],
    quorum: int,
    problems: list[str],
    now: datetime | None,
) -> Witnessing:
    """Find the largest checkpoint cosigned by a quorum, and whether newer ones wait too long."""
    witnessed = [(size, names) for (size, _), names in cosigned.items() if len(names) >= quorum]
    if not witnessed:
        problems.append(f"no checkpoint of shard {shard} carries {quorum} witness cosignatures")
        return Witnessing(quorum=quorum, problems=tuple(problems))
    size, names = max(witnessed, key=lambda item: item[0])
    latest = session.latest_checkpoint(shard)
    pending = 0
    if latest is not None and latest[0] > size:
        pending = latest[0] - size
        issued = session.checkpoint_issued(shard, latest[0])
        if now is None or issued is None or now - issued > WITNESS_GRACE:
            problems.append(
                f"the latest checkpoint of shard {shard} (size {latest[0]}) is not cosigned by "
                f"{quorum} witnesses; the last witnessed one has size {size}"
            )
    return Witnessing(
        quorum=quorum, size=size, cosigners=tuple(sorted(names)), problems=tuple(problems), pending=pending
    )


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
