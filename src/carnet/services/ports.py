"""The interfaces the services depend on; adapters in ``crypto`` and ``store`` implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from carnet.domain.feeds import DeadLetter, Feed, FeedStatus, LetterStatus, StoredOffer
from carnet.domain.journal import StoredEntry
from carnet.domain.keys import WrappedKey


class Cipher(Protocol):
    """Symmetric primitives: sealing (DESIGN §4), subkeys and blind indexes."""

    def generate_key(self) -> bytes:
        """Return a fresh 256-bit key."""
        ...

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal ``plaintext`` bound to ``aad``."""
        ...

    def unseal(self, key: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Open a sealed value; raise ``EnvelopeError`` on any failure."""
        ...

    def derive_subkey(self, key: bytes, purpose: str) -> bytes:
        """Derive a purpose-bound subkey."""
        ...

    def blind_index(self, key: bytes, *parts: str) -> bytes:
        """Return a keyed hash of ``parts``."""
        ...


class KeyProvider(Protocol):
    """Wraps and unwraps patient keys with key-encryption keys kept apart from storage."""

    name: str

    def current_kek_id(self) -> str:
        """Return the id of the KEK used for new wraps."""
        ...

    def wrap(self, key: bytes) -> WrappedKey:
        """Wrap a 32-byte key under the current KEK."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key; raise ``KeyProviderError`` if it does not unwrap."""
        ...

    def new_kek(self) -> str:
        """Create a KEK, make it current, return its id."""
        ...

    def kek_ids(self) -> list[str]:
        """List the KEKs held."""
        ...

    def retire(self, kek_id: str) -> None:
        """Destroy a KEK that no longer wraps anything."""
        ...


class ErasureShares(Protocol):
    """One random share per record key, kept apart from the database and destroyed at shred."""

    def new(self) -> tuple[bytes, bytes]:
        """Create a durable share; return ``(share id, share)``."""
        ...

    def get(self, share_id: bytes) -> bytes | None:
        """Return a share, or None once it was destroyed."""
        ...

    def destroy(self, share_id: bytes) -> bool:
        """Destroy a share for good; tell whether it was there."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredVersion:
    """One stored version of a resource; ``sealed`` is None for a deletion."""

    patient_id: str
    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    sealed: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredKey:
    """A patient's wrapped key as stored; ``wrapped`` is None once shredded."""

    patient_id: str
    wrapped: WrappedKey | None
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientCredential:
    """One sign-in credential of a built-in patient account (``carnet.services.patient_accounts``)."""

    patient_id: str
    credential_key: str
    kind: str
    secret: bytes
    sign_count: int = 0
    expires_at: datetime | None = None
    #: When it was stored (read back from the store; ignored when storing).
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RepresentationLink:
    """One link of the legal representatives' registry (``carnet.services.representations``)."""

    patient_id: str
    link_id: str
    representative_key: str
    basis: str
    details: bytes
    created_at: datetime
    expires_at: datetime | None = None


class StoreSession(Protocol):
    """One database transaction. Every method is keyed by patient id (the distribution column)."""

    def savepoint(self) -> AbstractContextManager[None]:
        """Run a block whose writes are undone, alone, if it raises; the transaction goes on."""
        ...

    def serialise(self, key: str) -> None:
        """Make concurrent transactions taking the same ``key`` wait for this one to end."""
        ...

    def get_key(self, patient_id: str) -> StoredKey | None:
        """Return the patient's stored key row."""
        ...

    def put_key(self, patient_id: str, wrapped: WrappedKey, now: datetime) -> None:
        """Store a new patient's wrapped key."""
        ...

    def rewrap_key(self, patient_id: str, old: WrappedKey, wrapped: WrappedKey) -> bool:
        """Replace a wrapped key (and its share id) if it is still ``old``; tell whether it was."""
        ...

    def keys_not_under(self, kek_id: str, limit: int, *, or_without_share: bool = False) -> list[StoredKey]:
        """Return up to ``limit`` live keys wrapped under another KEK (or, if asked, with no share)."""
        ...

    def live_keys(self, after: str, limit: int) -> list[StoredKey]:
        """Return up to ``limit`` live keys of records whose id sorts after ``after``."""
        ...

    def count_keys(self) -> int:
        """Count live patient keys."""
        ...

    def shred_key(self, patient_id: str, now: datetime) -> None:
        """Destroy the patient's wrapped key and the patient's search indexes."""
        ...

    def locate(self, resource_type: str, resource_id: str) -> str | None:
        """Return the patient id holding a resource, if any."""
        ...

    def id_prefix(self, patient_id: str) -> str:
        """Return how a new resource id of this record starts (on Citus, its shard's log key and a dot)."""
        ...

    def current(self, patient_id: str, resource_type: str, resource_id: str) -> StoredVersion | None:
        """Return the current version (possibly a deletion)."""
        ...

    def current_of_types(self, patient_id: str, resource_types: Sequence[str]) -> list[StoredVersion]:
        """Return the current, non-deleted versions of every resource of these types in a record."""
        ...

    def locate_current(self, resource_type: str, resource_id: str) -> tuple[str, StoredVersion | None] | None:
        """Return the patient id holding a resource and its current version (``locate`` + ``current``)."""
        ...

    def current_many(self, patient_id: str, keys: Sequence[tuple[str, str]]) -> list[StoredVersion]:
        """Return the current, non-deleted versions of several ``(type, id)`` of one record, in one query."""
        ...

    def version(
        self, patient_id: str, resource_type: str, resource_id: str, version_id: int
    ) -> StoredVersion | None:
        """Return one version."""
        ...

    def history(self, patient_id: str, resource_type: str, resource_id: str | None) -> list[StoredVersion]:
        """Return every version of a resource (or of a type in a record), newest first."""
        ...

    def write_version(self, version: StoredVersion) -> None:
        """Append a version and make it current; raise ``Conflict`` if that version exists."""
        ...

    def set_tokens(
        self,
        patient_id: str,
        resource_type: str,
        resource_id: str,
        hashes: set[tuple[str, bytes]],
        *,
        new: bool = False,
    ) -> None:
        """Replace a resource's blind-index entries (``new``: it has none yet, nothing to delete)."""
        ...

    def search(
        self,
        patient_id: str,
        resource_type: str | None,
        ids: Sequence[str],
        token_filters: Sequence[tuple[str, Sequence[bytes]]],
    ) -> list[StoredVersion]:
        """Return current, non-deleted versions matching ids and every token filter."""
        ...

    def find_identities(self, value_hash: bytes) -> list[str]:
        """Return every live patient registered under a global identifier hash."""
        ...

    def set_identities(self, patient_id: str, hashes: set[bytes]) -> None:
        """Replace the global identifier hashes of a patient; raise ``Conflict`` if one is taken."""
        ...

    # -- the access journal (carnet.store.journal) --

    def journal_head(self, shard: int, *, lock: bool = False) -> tuple[int, bytes] | None:
        """Return a shard's ``(size, peaks)``, locking it for this transaction if asked."""
        ...

    def ensure_journal_heads(self, shards: int) -> None:
        """Create the empty head of every shard that has none."""
        ...

    def append_journal(
        self,
        shard: int,
        entries: list[StoredEntry],
        nodes: list[tuple[int, int, bytes]],
        size: int,
        peaks: bytes,
    ) -> None:
        """Write appended entries, their completed tree nodes and the shard's new head."""
        ...

    def journal_node(self, shard: int, level: int, idx: int) -> bytes | None:
        """Return one stored perfect-subtree hash."""
        ...

    def journal_node_rows(self, shard: int) -> Iterator[tuple[int, int, bytes]]:
        """Yield a shard's stored nodes as ``(level, index, digest)``, by level then index."""
        ...

    def journal_entry(self, shard: int, seq: int) -> StoredEntry | None:
        """Return one stored entry."""
        ...

    def journal_rows(self, shard: int) -> Iterator[StoredEntry]:
        """Yield a shard's entries in ``seq`` order."""
        ...

    def journal_log_count(self, configured: int) -> int:
        """Return how many logs the journal has (one per record shard on Citus, else ``configured``)."""
        ...

    def journal_log_of(self, patient_id: str, configured: int) -> int:
        """Return the log that takes a record's new entries."""
        ...

    def journal_logs_of(self, patient_id: str, configured: int) -> tuple[int, ...]:
        """Return the logs that may hold a record's entries."""
        ...

    def journal_shards(self) -> list[int]:
        """Return the shards that have a head or hold entries."""
        ...

    def journal_of(
        self,
        patient_id: str | None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        newest_first: bool = True,
        logs: Sequence[int] | None = None,
    ) -> list[StoredEntry]:
        """Return the entries about one record (or every record), by time (``logs``: its logs only)."""
        ...

    def put_checkpoint(self, shard: int, size: int, issued_at: datetime, note: bytes) -> bool:
        """Store a signed checkpoint; return False if one of that size exists."""
        ...

    def latest_checkpoint(self, shard: int) -> tuple[int, bytes] | None:
        """Return the ``(size, note)`` of a shard's largest checkpoint."""
        ...

    def journal_checkpoints(self, shard: int) -> list[tuple[int, bytes]]:
        """Return every ``(size, note)`` of a shard, smallest first."""
        ...

    def checkpoint_at_least(self, shard: int, size: int) -> tuple[int, bytes] | None:
        """Return the smallest checkpoint of a shard covering at least ``size`` entries."""
        ...

    def put_cosignature(self, shard: int, size: int, witness: str, cosigned_at: datetime, line: str) -> None:
        """Store (or replace) a witness's cosignature line of the checkpoint of ``size``."""
        ...

    def cosignatures(self, shard: int, size: int) -> dict[str, str]:
        """Return the cosignature lines of a checkpoint, by witness name."""
        ...

    def last_cosigned(self, shard: int, witness: str) -> int:
        """Return the largest checkpoint size of a shard the witness cosigned (0: none)."""
        ...

    def recent_checkpoints(self, shard: int, limit: int) -> list[tuple[int, datetime, bytes]]:
        """Return a shard's latest ``(size, issued_at, note)`` checkpoints, newest first."""
        ...

    def checkpoint_issued(self, shard: int, size: int) -> datetime | None:
        """Return when the checkpoint of ``size`` was issued."""
        ...

    def add_journal_actor(self, patient_id: str, actor_hash: bytes) -> bool:
        """Remember that an actor accessed a record; return True the first time."""
        ...

    def add_feed(self, feed: Feed) -> None:
        """Register a feed (``Conflict`` if its id is taken)."""
        ...

    def feed(self, feed_id: str) -> Feed | None:
        """Return a registered feed, or None."""
        ...

    def all_feeds(self) -> list[Feed]:
        """Return every registered feed, by id."""
        ...

    def feed_with_certificate(self, certificate: str) -> Feed | None:
        """Return the feed registered with this client certificate (SHA-256 hex), or None."""
        ...

    def set_feed_status(self, feed_id: str, status: FeedStatus) -> bool:
        """Set a feed's status; return False if there is no such feed."""
        ...

    def message_ack(self, feed_id: str, control_id: str) -> tuple[str, bytes, bytes | None] | None:
        """Return the outcome, ACK and content digest of a feed message already taken, or None."""
        ...

    def record_message(
        self,
        feed_id: str,
        control_id: str,
        outcome: str,
        ack: bytes,
        now: datetime,
        digest: bytes | None = None,
    ) -> None:
        """Remember the answer to a feed message (and the digest of its content, when given)."""
        ...

    def add_letter(self, letter: DeadLetter) -> None:
        """Keep a dead letter."""
        ...

    def letters(self, *, status: LetterStatus | None, limit: int) -> list[DeadLetter]:
        """Return dead letters, oldest first."""
        ...

    def letter(self, letter_id: str) -> DeadLetter | None:
        """Return one dead letter, or None."""
        ...

    def update_letter(self, letter_id: str, *, status: LetterStatus, error_code: str, error: str) -> None:
        """Record a replay's result."""
        ...

    def add_offer(self, offer: StoredOffer) -> None:
        """Keep a document a feed offered to a patient."""
        ...

    def offers(self, patient_id: str) -> list[StoredOffer]:
        """Return a record's pending offers, oldest first."""
        ...

    def take_offer(self, patient_id: str, offer_id: str) -> StoredOffer | None:
        """Remove and return one pending offer of a record."""
        ...

    def save_portal_session(self, sid_hash: str, sealed: bytes, expires_at: datetime | None) -> None:
        """Store a portal session's sealed content: a new row (``expires_at``) or an update (None)."""
        ...

    def load_portal_session(self, sid_hash: str, now: datetime) -> bytes | None:
        """Return a portal session's sealed content, or None if there is none or it expired."""
        ...

    def delete_portal_session(self, sid_hash: str) -> None:
        """Delete a portal session."""
        ...

    def forget_portal_sessions(self, now: datetime) -> int:
        """Delete the portal sessions expired at ``now``; return how many."""
        ...

    def add_patient_credential(self, credential: PatientCredential, now: datetime) -> None:
        """Store one credential of a built-in patient account."""
        ...

    def find_patient_credential(self, kind: str, credential_key: str) -> PatientCredential | None:
        """Return the credential of this kind and key, whatever its record, or None."""
        ...

    def patient_credentials(self, patient_id: str, kind: str) -> list[PatientCredential]:
        """Return a record's credentials of one kind."""
        ...

    def take_patient_credential(self, patient_id: str, kind: str, credential_key: str) -> bool:
        """Delete a one-time credential; True only for the transaction that deleted it."""
        ...

    def forget_patient_credentials(self, patient_id: str, kind: str) -> None:
        """Delete all of a record's credentials of one kind."""
        ...

    def count_patient_credential(self, patient_id: str, credential_key: str, sign_count: int) -> None:
        """Record a passkey's new signature counter."""
        ...

    def add_representation(self, link: RepresentationLink) -> None:
        """Store one representation link."""
        ...

    def representations_of(self, patient_id: str) -> list[RepresentationLink]:
        """Return the links of one represented record."""
        ...

    def representations_by(self, representative_key: str) -> list[RepresentationLink]:
        """Return the links of one representative key, whatever the record."""
        ...

    def bind_representation(self, link: RepresentationLink, representative_key: str) -> bool:
        """Give a pending link its representative; True only for the transaction that did."""
        ...

    def remove_representation(self, patient_id: str, link_id: str) -> bool:
        """Delete one link; True when it existed."""
        ...


class CheckpointSigner(Protocol):
    """Signs the journal's tree heads (C2SP signed-note checkpoints, Ed25519)."""

    #: The verifier key anyone uses to check the checkpoints (``name+keyid+base64``).
    verifier_key: str

    def sign(self, origin: str, size: int, root: bytes) -> bytes:
        """Return the signed checkpoint note of ``origin`` at ``size`` with ``root``."""
        ...


class Witness(Protocol):
    """A witness of the journal (C2SP tlog-witness) as the checkpoint publisher sees it."""

    #: The witness's name (its cosigner key name).
    name: str

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: bytes) -> str:
        """Submit a checkpoint with the consistency proof from ``old_size``; return its cosignature line.

        The line is verified against the witness's key before it is returned.

        Raises:
            WitnessRefused: the witness answered with an error status (409 carries its size).
            AuditChainError: the witness answered with a cosignature that does not verify.
            OSError: the witness could not be reached.
        """
        ...


class Store(Protocol):
    """Opens transactions on the record store."""

    #: One transaction writes at a time (SQLite): concurrent writes gain by sharing a commit.
    single_writer: bool

    def writer_first(self) -> None:
        """Wait, briefly, while a thread of this process holds the single writer's lock.

        Called by work that prepares a write before its transaction (a Bundle's validation):
        it would otherwise take the interpreter from the thread in the lock, which every writer
        of every worker waits for. Returns at once where writers run side by side.
        """
        ...

    def session(
        self, *, write: bool = False, committed: Callable[[], None] | None = None
    ) -> AbstractContextManager[StoreSession]:
        """Open one transaction, committed when the block exits without error.

        ``committed`` is called once the transaction is committed, before the block's exit
        returns; the exit may still wait for the commit's flush to disk (SQLite) after it, and
        nothing may depend on the commit before the exit has returned. The group commit uses it
        to tell a failed flush (the batch committed: not run again) from a failed transaction.
        """
        ...
