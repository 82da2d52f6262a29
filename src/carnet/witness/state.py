"""A witness's key and memory: its signer key file and a SQLite file of the logs it follows.

``witness.key`` (0600) holds the witness's cosigner key, ``witness.pub`` its verifier key (give
it to the log operator), ``witness.sqlite3`` one row per trusted log: its origin, its verifier
key, and the latest checkpoint the witness cosigned (size, root, the note and the cosignature);
and, as evidence, every request it refused with a 409 or 422 although the log had signed it: a
checkpoint signed by the log that does not extend what the witness cosigned is a signed proof
that the log was rolled back or forked.
Checking a submission against that row and replacing it happen in one ``BEGIN IMMEDIATE``
transaction, so two concurrent submissions can never roll the witness back.
"""

from __future__ import annotations

import base64
import binascii
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from carnet.audit.checkpoint import Checkpoint, open_checkpoint, parse_body, parse_key, split_note
from carnet.audit.cosignature import cosign, generate_cosigner, parse_cosigner_key
from carnet.domain.errors import AuditChainError, CarnetError, ConfigurationError
from carnet.domain.merkle import EMPTY_ROOT, verify_consistency

KEY_FILE = "witness.key"
VERIFIER_FILE = "witness.pub"
STATE_FILE = "witness.sqlite3"
#: The specification caps a consistency proof at 63 hashes.
MAX_PROOF_LINES = 63
_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    verifier_key TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    root BLOB,
    note BLOB,
    cosignature TEXT
);
CREATE TABLE IF NOT EXISTS evidence (
    origin TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    request BLOB NOT NULL
)
"""


class Refusal(CarnetError):
    """The witness will not cosign: ``status`` is the HTTP status the protocol prescribes.

    For 409 (old size mismatch), ``size`` is the size of the latest checkpoint it cosigned.
    """

    def __init__(self, status: int, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """A parsed ``add-checkpoint`` request body."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes
    #: The request body as received (kept as evidence when refused).
    raw: bytes


def init_witness(directory: Path, name: str) -> str:
    """Create a witness's key and state in ``directory``; return its verifier key.

    Raises:
        ConfigurationError: the directory already holds a witness key.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer, verifier = generate_cosigner(name)
    try:
        fd = os.open(directory / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{directory / KEY_FILE} exists; a witness keeps its key for good."
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(signer + "\n")
    (directory / VERIFIER_FILE).write_text(verifier + "\n", encoding="ascii")
    WitnessState(directory).close()
    return verifier


def parse_submission(body: bytes) -> Submission:
    """Parse ``old <size>``, the proof lines, a blank line and the checkpoint note.

    Raises:
        Refusal: 400 when the body is not of that form.
    """
    head, blank, note = body.partition(b"\n\n")
    if not blank:
        raise Refusal(400, "The body must be 'old <size>', proof lines, a blank line and the checkpoint.")
    lines = head.split(b"\n")
    first = lines[0]
    if (
        not first.startswith(b"old ")
        or not (digits := first[4:]).isdigit()
        or digits != str(int(digits)).encode()
    ):
        raise Refusal(400, "The first line must be 'old <size>', a decimal without leading zeros.")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, f"A consistency proof has at most {MAX_PROOF_LINES} lines.")
    proof = []
    for line in lines[1:]:
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise Refusal(400, "A consistency proof line is not base64.") from None
        if len(digest) != 32:
            raise Refusal(400, "A consistency proof line is not a 32-byte hash.")
        proof.append(digest)
    return Submission(old_size=int(digits), proof=tuple(proof), note=note, raw=body)


class WitnessState:
    """The witness's key and the logs it follows, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # one transaction at a time on the shared connection
        self._db = sqlite3.connect(directory / STATE_FILE, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._signer: tuple[str, bytes] | None = None
        os.chmod(directory / STATE_FILE, 0o600)

    def close(self) -> None:
        """Close the state file."""
        self._db.close()

    def signer(self) -> tuple[str, bytes]:
        """Return the witness's ``(name, seed)``.

        Raises:
            ConfigurationError: no key: run ``carnet witness init`` first.
        """
        if self._signer is None:
            path = self.directory / KEY_FILE
            if not path.exists():
                raise ConfigurationError(
                    f"No witness key in {self.directory}; run `carnet witness init` first."
                )
            self._signer = parse_cosigner_key(path.read_text(encoding="ascii").strip())
        return self._signer

    def verifier_key(self) -> str:
        """Return the witness's verifier key."""
        return (self.directory / VERIFIER_FILE).read_text(encoding="ascii").strip()

    def trust(self, origin: str, verifier_key: str) -> None:
        """Follow the log ``origin`` whose checkpoints ``verifier_key`` signs (keeps what it saw).

        Raises:
            AuditChainError: the verifier key is malformed.
        """
        parse_key(verifier_key, "Log verifier key")
        self._db.execute(
            "INSERT INTO logs (origin, verifier_key) VALUES (?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET verifier_key = excluded.verifier_key",
            (origin, verifier_key),
        )

    def logs(self) -> list[tuple[str, int]]:
        """Return the ``(origin, latest cosigned size)`` of every log followed."""
        return [
            (str(o), int(s)) for o, s in self._db.execute("SELECT origin, size FROM logs ORDER BY origin")
        ]

    def evidence(self, origin: str) -> list[tuple[int, int, str, bytes]]:
        """Return the refused, log-signed requests kept for ``origin``: ``(time, status, reason, body)``."""
        rows = self._db.execute(
            "SELECT received_at, status, reason, request FROM evidence WHERE origin = ? ORDER BY rowid",
            (origin,),
        )
        return [(int(r[0]), int(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def latest(self, origin: str) -> bytes | None:
        """Return the latest checkpoint cosigned for ``origin``, with the cosignature, or None."""
        row = self._db.execute("SELECT note, cosignature FROM logs WHERE origin = ?", (origin,)).fetchone()
        if row is None or row[0] is None:
            return None
        return bytes(row[0]) + str(row[1]).encode()

    def add_checkpoint(self, submission: Submission, now: int) -> str:
        """Check a submitted checkpoint against the latest one cosigned; cosign it and remember it.

        Raises:
            Refusal: 400 malformed; 404 unknown log; 403 not signed by the log's key; 409 the old
                size is not the size last cosigned (or equal sizes with another root); 422 the
                consistency proof does not verify.
        """
        try:
            text, _ = split_note(submission.note)
            origin = parse_body(text).origin
        except AuditChainError as exc:
            raise Refusal(400, f"The checkpoint is malformed: {exc.message}") from None
        row = self._db.execute("SELECT verifier_key FROM logs WHERE origin = ?", (origin,)).fetchone()
        if row is None:
            raise Refusal(404, f"This witness does not follow the log {origin!r}.")
        try:
            checkpoint = open_checkpoint(submission.note, str(row[0]), origin=origin)
        except AuditChainError:
            raise Refusal(403, f"The checkpoint is not signed by the key of {origin!r}.") from None
        if submission.old_size > checkpoint.size:
            raise Refusal(400, "The old size is larger than the checkpoint's size.")
        name, seed = self.signer()
        with self._lock:
            try:
                return self._record(submission, origin, text, checkpoint, name, seed, now)
            except Refusal as refusal:
                # The log signed it, yet it does not extend what was cosigned: keep it as evidence.
                self._db.execute(
                    "INSERT INTO evidence (origin, received_at, status, reason, request) VALUES (?, ?, ?, ?, ?)",
                    (origin, now, refusal.status, refusal.message, submission.raw),
                )
                raise

    def _record(
        self,
        submission: Submission,
        origin: str,
        text: str,
        checkpoint: Checkpoint,
        name: str,
        seed: bytes,
        now: int,
    ) -> str:
        """Compare with the latest cosigned checkpoint and replace it, in one write transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            size, root = self._db.execute(
                "SELECT size, root FROM logs WHERE origin = ?", (origin,)
            ).fetchone()
            known = EMPTY_ROOT if root is None else bytes(root)
            if submission.old_size != size:
                raise Refusal(409, f"The latest checkpoint cosigned is of size {size}.", size=int(size))
            if checkpoint.size == size and checkpoint.root_hash != known:
                raise Refusal(
                    409, f"A checkpoint of size {size} with another root was cosigned.", size=int(size)
                )
            try:
                verify_consistency(size, checkpoint.size, known, checkpoint.root_hash, submission.proof)
            except AuditChainError as exc:
                raise Refusal(422, f"The consistency proof does not verify: {exc.message}") from None
            line = cosign(text, seed, name, now)
            self._db.execute(
                "UPDATE logs SET size = ?, root = ?, note = ?, cosignature = ? WHERE origin = ?",
                (checkpoint.size, checkpoint.root_hash, submission.note, line, origin),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return line
