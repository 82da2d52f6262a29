"""The access journal: append sealed entries, issue signed checkpoints, prove and open entries.

:meth:`Journal.append` runs inside the caller's write transaction, so an entry commits with the
change it records, or neither does. Each shard is an independent Merkle log (RFC 6962) whose
head (size and compact-range peaks) is updated in the same transaction; every node the append
completes is stored, so inclusion and consistency proofs cost O(log n) reads.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from carnet.domain.errors import AuditChainError, NotFound, WitnessRefused
from carnet.domain.journal import (
    SALT_SIZE,
    Entry,
    StoredEntry,
    associated_data,
    commitment,
    entry_leaf_hash,
    leaf_input,
)
from carnet.domain.merkle import HASH_SIZE, CompactRange, prove_consistency, prove_inclusion
from carnet.services.ports import CheckpointSigner, Cipher, Store, StoreSession, Witness

Clock = Callable[[], datetime]
log = logging.getLogger("carnet.journal")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedEntry:
    """A stored entry with its content opened by the patient key."""

    row: StoredEntry
    entry: Entry
    salt: bytes

    @property
    def event_id(self) -> str:
        """The entry's public id: ``<shard>-<seq>``."""
        return f"{self.row.shard}-{self.row.seq}"


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionProof:
    """What anyone needs to check that an entry is in the journal under a signed checkpoint."""

    shard: int
    index: int
    leaf_input: bytes
    proof: tuple[bytes, ...]
    checkpoint: bytes
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """What one witness answered to one checkpoint: ``cosigned``, or why not (status, message)."""

    shard: int
    size: int
    witness: str
    cosigned: bool
    status: int | None = None
    message: str = ""


def parse_event_id(event_id: str) -> tuple[int, int]:
    """Return ``(shard, seq)`` of an AuditEvent id ``<shard>-<seq>``.

    Raises:
        NotFound: the id is not of that form.
    """
    shard, _, seq = event_id.partition("-")
    if not (shard.isdigit() and seq.isdigit() and len(shard) <= 4 and len(seq) <= 19):
        raise NotFound(f"AuditEvent/{event_id[:40]} is not known.")
    return int(shard), int(seq)


class Journal:
    """Appends, checkpoints and proves the access journal of one deployment."""

    def __init__(
        self,
        *,
        store: Store,
        cipher: Cipher,
        signer: CheckpointSigner,
        origin: str,
        shards: int,
        clock: Clock,
        witnesses: Sequence[Witness] = (),
    ) -> None:
        self.store = store
        self.witnesses = tuple(witnesses)
        #: The checkpoint size each (shard, witness) last refused (409, 422): not sent again until it grows.
        self._refused: dict[tuple[int, str], int] = {}
        self.cipher = cipher
        self.signer = signer
        self.base_origin = origin
        #: ``CARNET_JOURNAL_SHARDS``; on Citus :meth:`start` counts one log per record shard instead.
        self.configured = shards
        self.shards = shards
        self.clock = clock

    def origin(self, shard: int) -> str:
        """Return the checkpoint origin of a shard (shard 0 is the base origin)."""
        return self.base_origin if shard == 0 else f"{self.base_origin}/{shard}"

    def start(self, session: StoreSession) -> None:
        """Count the logs (on Citus, one per record shard) and create their heads if missing (at start-up)."""
        self.shards = session.journal_log_count(self.configured)
        session.ensure_journal_heads(self.shards)

    def log_of(self, session: StoreSession, patient_id: str) -> int:
        """Return the log that takes a record's entries (a hash of its id, or on Citus its shard's)."""
        return session.journal_log_of(patient_id, self.configured)

    def logs_of(self, session: StoreSession, patient_id: str) -> tuple[int, ...]:
        """Return the logs that may hold a record's entries (two on a store converted to Citus)."""
        return session.journal_logs_of(patient_id, self.configured)

    # -- writing ------------------------------------------------------------------------

    def append(self, session: StoreSession, entries: Sequence[tuple[bytes, Entry]]) -> list[StoredEntry]:
        """Seal and append entries (each with its record's key) in the caller's transaction.

        Raises:
            AuditChainError: a shard's stored head is corrupt.
        """
        by_shard: dict[int, list[tuple[bytes, Entry]]] = {}
        for key, entry in entries:
            by_shard.setdefault(self.log_of(session, entry.patient_id), []).append((key, entry))
        written: list[StoredEntry] = []
        for shard in sorted(by_shard):  # a fixed order: two writers never lock shards crosswise
            head = session.journal_head(shard, lock=True)
            if head is None:
                session.ensure_journal_heads(self.shards)
                head = session.journal_head(shard, lock=True) or (0, b"")
            size, packed = head
            peaks = [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)]
            compact = CompactRange(size=size, peaks=peaks)
            rows: list[StoredEntry] = []
            nodes: list[tuple[int, int, bytes]] = []
            for key, entry in by_shard[shard]:
                seq = compact.size
                salt = secrets.token_bytes(SALT_SIZE)
                content = entry.content()
                sealed = self.cipher.seal(key, salt + content, associated_data(shard, seq, entry.patient_id))
                row = StoredEntry(
                    shard=shard,
                    seq=seq,
                    patient_id=entry.patient_id,
                    recorded_at=entry.recorded,
                    commitment=commitment(salt, content),
                    sealed=sealed,
                )
                nodes.extend((n.level, n.index, n.digest) for n in compact.append(entry_leaf_hash(row)))
                rows.append(row)
            session.append_journal(shard, rows, nodes, compact.size, b"".join(compact.peaks))
            written.extend(rows)
        return written

    # -- checkpoints ----------------------------------------------------------------------

    def issue_checkpoints(self) -> int:
        """Sign a checkpoint for every shard that grew since its last one; return how many."""
        issued = 0
        for shard in range(self.shards):
            with self.store.session(write=True) as session:
                if self._issue(session, shard):
                    issued += 1
        return issued

    def run(self, stop: threading.Event, seconds: float) -> None:
        """Issue checkpoints and have them cosigned every ``seconds`` until ``stop`` is set.

        The server's background loop: a witness that is down or refuses is tried again at the
        next tick, and no request ever waits for a witness.
        """
        while not stop.wait(seconds):
            try:
                self.issue_checkpoints()
                self.publish()
            except Exception:  # a failed pass is retried at the next tick; the loop must live
                log.exception("checkpoint pass failed")

    def publish(self) -> list[Publication]:
        """Submit each shard's latest checkpoint to every witness that has not cosigned it yet.

        The old size sent to a witness is the largest it cosigned here; when it answers 409 with
        another size this journal covers, the submission is retried once from that size (a
        witness restored from a backup, or cosignatures lost). Cosignatures are stored with the
        checkpoint. A refusal (422: the proof does not verify; 409 with a size beyond this
        journal) means the journal was rolled back or forked since the witness last saw it: it
        is logged as an error, and ``carnet audit verify`` fails. A checkpoint refused so is not sent
        again to that witness (which keeps each copy as evidence) until a newer one is issued.
        """
        done: list[Publication] = []
        if not self.witnesses:
            return done
        for shard in range(self.shards):
            with self.store.session() as session:
                latest = session.latest_checkpoint(shard)
                if latest is None:
                    continue
                size, note = latest
                have = session.cosignatures(shard, size)
                missing = [
                    (w, session.last_cosigned(shard, w.name))
                    for w in self.witnesses
                    if w.name not in have and self._refused.get((shard, w.name)) != size
                ]
            for witness, old in missing:
                done.append(self._submit(witness, shard, size, note, old))
        return done

    def _submit(self, witness: Witness, shard: int, size: int, note: bytes, old: int) -> Publication:
        """Submit one checkpoint to one witness (retrying once from the size it says it has)."""
        for _ in range(2):
            try:
                with self.store.session() as session:
                    if old > size:
                        raise WitnessRefused(
                            f"The witness {witness.name!r} cosigned {old} entries of shard {shard}; "
                            f"the journal now holds {size}: it was rolled back.",
                            status=409,
                            size=old,
                        )
                    proof = prove_consistency(self._node_getter(session, shard), old, size)
                line = witness.add_checkpoint(old, proof, note)
            except WitnessRefused as refusal:
                if refusal.status == 409 and refusal.size is not None and refusal.size != old:
                    old = refusal.size
                    continue
                if refusal.status in (409, 422):  # definitive: the witness keeps each copy as evidence
                    self._refused[(shard, witness.name)] = size
                log.error(
                    "witness %s refuses checkpoint %s of shard %s: %s",
                    witness.name,
                    size,
                    shard,
                    refusal.message,
                )
                return Publication(
                    shard=shard,
                    size=size,
                    witness=witness.name,
                    cosigned=False,
                    status=refusal.status,
                    message=refusal.message,
                )
            except (OSError, AuditChainError) as error:
                log.warning(
                    "witness %s did not cosign checkpoint %s of shard %s: %s",
                    witness.name,
                    size,
                    shard,
                    error,
                )
                return Publication(
                    shard=shard, size=size, witness=witness.name, cosigned=False, message=str(error)
                )
            with self.store.session(write=True) as session:
                session.put_cosignature(shard, size, witness.name, self.clock(), line)
            return Publication(shard=shard, size=size, witness=witness.name, cosigned=True, status=200)
        return Publication(
            shard=shard,
            size=size,
            witness=witness.name,
            cosigned=False,
            status=409,
            message="size changed twice",
        )

    def _issue(self, session: StoreSession, shard: int) -> bool:
        head = session.journal_head(shard)
        if head is None:
            return False
        size, packed = head
        latest = session.latest_checkpoint(shard)
        if latest is not None and latest[0] >= size:
            return False
        peaks = [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)]
        root = CompactRange(size=size, peaks=peaks).root()
        note = self.signer.sign(self.origin(shard), size, root)
        return session.put_checkpoint(shard, size, self.clock(), note)

    def checkpoint(self, shard: int = 0) -> bytes:
        """Return the latest signed checkpoint of a shard, with its witnesses' cosignatures.

        One is issued first if the journal grew (it is then not cosigned yet).

        Raises:
            NotFound: no such shard.
        """
        if not 0 <= shard < self.shards:
            raise NotFound(f"The journal has no shard {shard}.")
        with self.store.session(write=True) as session:
            self._issue(session, shard)
            latest = session.latest_checkpoint(shard)
            lines = session.cosignatures(shard, latest[0]) if latest is not None else {}
        if latest is None:
            raise NotFound(f"The journal has no shard {shard}.")
        # The witnesses' cosignature lines follow the log's signature (C2SP tlog-cosignature).
        return latest[1] + "".join(lines[name] for name in sorted(lines)).encode()

    def recent_checkpoints(self, patient_id: str, count: int = 5) -> list[tuple[int, datetime, bytes]]:
        """Return the latest checkpoints of a record's shard, newest first, each with its cosignatures.

        Nothing is issued: this is what the witnesses were shown (``(size, issued_at, note)``).
        """
        with self.store.session() as session:
            shard = self.log_of(session, patient_id)
            found = session.recent_checkpoints(shard, count)
            return [
                (size, issued, note + "".join(sorted(session.cosignatures(shard, size).values())).encode())
                for size, issued, note in found
            ]

    # -- reading and proving --------------------------------------------------------------

    def open(self, key: bytes, row: StoredEntry) -> OpenedEntry:
        """Open a stored entry with its record's key and check it against its commitment.

        Raises:
            EnvelopeError: it does not open (wrong key or altered).
            AuditChainError: the content does not match the stored commitment.
        """
        plain = self.cipher.unseal(key, row.sealed, associated_data(row.shard, row.seq, row.patient_id))
        salt, content = plain[:SALT_SIZE], plain[SALT_SIZE:]
        if commitment(salt, content) != row.commitment:
            raise AuditChainError(f"Journal entry {row.shard}-{row.seq} does not match its commitment.")
        return OpenedEntry(row=row, entry=Entry.from_content(content), salt=salt)

    def prove(self, session: StoreSession, row: StoredEntry) -> InclusionProof:
        """Return the inclusion proof of an entry under the smallest checkpoint covering it.

        A checkpoint is issued first when none covers the entry yet, so a proof is available at once.
        """
        found = session.checkpoint_at_least(row.shard, row.seq + 1)
        if found is None:
            self._issue(session, row.shard)
            found = session.checkpoint_at_least(row.shard, row.seq + 1)
        if found is None:
            raise AuditChainError(f"No checkpoint covers journal entry {row.shard}-{row.seq}.")
        size, note = found
        proof = prove_inclusion(self._node_getter(session, row.shard), row.seq, size)
        return InclusionProof(
            shard=row.shard,
            index=row.seq,
            leaf_input=leaf_input(row),
            proof=tuple(proof),
            checkpoint=note,
            size=size,
        )

    def consistency(self, shard: int, old_size: int, new_size: int) -> tuple[bytes, bytes, list[bytes]]:
        """Return the two checkpoints of a shard at these sizes and the consistency proof between them.

        Raises:
            NotFound: no checkpoint was issued at one of the sizes.
            AuditChainError: the sizes are out of order.
        """
        with self.store.session() as session:
            notes = dict(session.journal_checkpoints(shard))
            if old_size not in notes or new_size not in notes:
                raise NotFound(f"No checkpoint of shard {shard} at size {old_size} or {new_size}.")
            proof = prove_consistency(self._node_getter(session, shard), old_size, new_size)
        return notes[old_size], notes[new_size], proof

    @staticmethod
    def _node_getter(session: StoreSession, shard: int) -> Callable[[int, int], bytes]:
        def get(level: int, index: int) -> bytes:
            digest = session.journal_node(shard, level, index)
            if digest is None:
                raise AuditChainError(f"Journal node {level}/{index} of shard {shard} is missing.")
            return digest

        return get
