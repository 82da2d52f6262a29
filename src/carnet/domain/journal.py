"""The access journal's entries, leaves and offline verification (DESIGN §5).

An entry records one access to one patient's record: who, when, what, in which mode, the
decision and the rules that made it. It is stored in four parts::

    content     canonical JSON of :class:`Entry` (sorted keys, UTF-8), sealed with the patient key
    salt        16 random bytes, sealed with the content (never stored in clear)
    commitment  SHA-256("carnet-journal-commitment\\0" || salt || content)
    sealed      the AEAD ciphertext of salt || content

and hashed into a Merkle tree (RFC 6962) whose leaf is :func:`leaf_input`::

    0x01 || shard (u32) || seq (u64) || recorded_at (i64, µs since the epoch)
         || len(patient_id) (u8) || patient_id (ASCII) || commitment || SHA-256(sealed)

So a checkpoint covers every stored byte of every entry (anyone can recompute the tree without
any key), the salted commitment lets the patient show one entry to a third party without
revealing the others, and shredding the patient key leaves the tree verifiable while the
content can no longer be read.

:func:`verify_log` is the offline verifier: it needs only the stored rows and a checkpoint's
size and root; given the stored node table, it names the exact first bad entry.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from carnet.domain.errors import AuditChainError
from carnet.domain.merkle import CompactRange, leaf_hash, node_hash, root_at

LEAF_FORMAT = 1
SALT_SIZE = 16
_COMMITMENT_PREFIX = b"carnet-journal-commitment\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER = struct.Struct(">BIQqB")  # format, shard, seq, µs, len(patient id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One access to one record, as the patient will read it (the sealed part of an entry).

    ``action`` is the FHIR interaction (``read``, ``search-type``, ``create``…) or operation;
    ``targets`` the resources disclosed or written (``Type/id/_history/n``); ``decision`` is
    ``permit`` or ``deny``; ``outcome`` ``ok`` or the error that ended the request;
    ``mode`` the access mode (``normal``, ``treating``, ``break_glass``, ``regulation``…);
    ``client`` and ``client_address`` the application and network address the request came
    from (IHE BALP's client agent), when it came over the network; ``query`` the search
    parameters of a search, URL-encoded; ``actor_structure`` the structure a professional
    signed in for (chosen at sign-in when they act for several).
    """

    recorded: datetime
    patient_id: str
    actor_kind: str
    actor_id: str
    actor_display: str | None = None
    actor_profession: str | None = None
    actor_specialty: str | None = None
    #: The structure (lieu d'exercice) a professional signed in for: its identifier and its name.
    actor_structure: str | None = None
    actor_structure_name: str | None = None
    action: str
    resource_type: str
    targets: tuple[str, ...] = ()
    mode: str = "normal"
    decision: str = "permit"
    outcome: str = "ok"
    reasons: tuple[str, ...] = ()
    justification: str | None = None
    confirmed_by: str | None = None
    notified: tuple[str, ...] = field(default=())
    client: str | None = None
    client_address: str | None = None
    query: str | None = None

    def content(self) -> bytes:
        """Return the canonical bytes of the entry (sorted-key JSON, UTF-8)."""
        data: dict[str, Any] = {
            "recorded": self.recorded.astimezone(UTC).isoformat(),
            "patient": self.patient_id,
            "actor": {
                "kind": self.actor_kind,
                "id": self.actor_id,
                "display": self.actor_display,
                "profession": self.actor_profession,
                "specialty": self.actor_specialty,
            },
            "action": self.action,
            "type": self.resource_type,
            "targets": list(self.targets),
            "mode": self.mode,
            "decision": self.decision,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "justification": self.justification,
            "confirmedBy": self.confirmed_by,
            "notified": list(self.notified),
        }
        # Added later: absent from older entries, whose bytes stay as they were committed.
        if self.client is not None or self.client_address is not None:
            data["client"] = {"id": self.client, "address": self.client_address}
        if self.query is not None:
            data["query"] = self.query
        if self.actor_structure is not None:
            data["actor"]["structure"] = {"id": self.actor_structure, "name": self.actor_structure_name}
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_content(cls, content: bytes) -> Entry:
        """Parse the canonical bytes written by :meth:`content`.

        Raises:
            AuditChainError: the bytes are not an entry.
        """
        try:
            data = orjson.loads(content)
            actor: Mapping[str, Any] = data["actor"]
            return cls(
                recorded=datetime.fromisoformat(data["recorded"]),
                patient_id=data["patient"],
                actor_kind=actor["kind"],
                actor_id=actor["id"],
                actor_display=actor.get("display"),
                actor_profession=actor.get("profession"),
                actor_specialty=actor.get("specialty"),
                actor_structure=(actor.get("structure") or {}).get("id"),
                actor_structure_name=(actor.get("structure") or {}).get("name"),
                action=data["action"],
                resource_type=data["type"],
                targets=tuple(data["targets"]),
                mode=data["mode"],
                decision=data["decision"],
                outcome=data["outcome"],
                reasons=tuple(data["reasons"]),
                justification=data.get("justification"),
                confirmed_by=data.get("confirmedBy"),
                notified=tuple(data.get("notified", ())),
                client=(data.get("client") or {}).get("id"),
                client_address=(data.get("client") or {}).get("address"),
                query=data.get("query"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditChainError("A journal entry's content is not a Carnet journal entry.") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry:
    """One row of the journal table, exactly as stored."""

    shard: int
    seq: int
    patient_id: str
    recorded_at: datetime
    commitment: bytes
    sealed: bytes


def commitment(salt: bytes, content: bytes) -> bytes:
    """Return the salted commitment to an entry's content.

    Raises:
        AuditChainError: the salt is not 16 bytes.
    """
    if len(salt) != SALT_SIZE:
        raise AuditChainError(f"A journal salt is {SALT_SIZE} bytes, not {len(salt)}.")
    return hashlib.sha256(_COMMITMENT_PREFIX + salt + content).digest()


def shard_of(patient_id: str, shards: int) -> int:
    """Return the journal shard of a record (a stable hash of its id)."""
    if shards <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(patient_id.encode()).digest()[:4], "big") % shards


def associated_data(shard: int, seq: int, patient_id: str) -> bytes:
    """Return the AEAD associated data binding a sealed entry to its place in the journal."""
    return b"carnet-journal\x00" + struct.pack(">IQ", shard, seq) + patient_id.encode()


def micros(moment: datetime) -> int:
    """Return a timestamp as whole microseconds since the Unix epoch (UTC)."""
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def leaf_input(row: StoredEntry) -> bytes:
    """Return the bytes a stored entry contributes to the Merkle tree (see the module docstring).

    Raises:
        AuditChainError: a field cannot be encoded (negative or oversized number, long id).
    """
    patient = row.patient_id.encode("utf-8", "surrogatepass")
    if len(patient) > 255:
        raise AuditChainError("A journal entry's patient id is longer than 255 bytes.")
    try:
        header = _HEADER.pack(LEAF_FORMAT, row.shard, row.seq, micros(row.recorded_at), len(patient))
    except struct.error as exc:
        raise AuditChainError("A journal entry's shard, index or time is out of range.") from exc
    return header + patient + row.commitment + hashlib.sha256(row.sealed).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    """The fields of a leaf input (see :func:`leaf_input`)."""

    shard: int
    seq: int
    recorded_micros: int
    patient_id: str
    commitment: bytes
    sealed_digest: bytes


def parse_leaf_input(data: bytes) -> Leaf:
    """Split a leaf input into its fields.

    Raises:
        AuditChainError: the bytes are not a Carnet journal leaf.
    """
    if len(data) < _HEADER.size:
        raise AuditChainError("A journal leaf is too short.")
    version, shard, seq, moment, length = _HEADER.unpack_from(data)
    if version != LEAF_FORMAT or len(data) != _HEADER.size + length + 64:
        raise AuditChainError("A journal leaf has an unknown format or a wrong length.")
    start = _HEADER.size + length
    return Leaf(
        shard=shard,
        seq=seq,
        recorded_micros=moment,
        patient_id=data[_HEADER.size : start].decode("utf-8", "replace"),
        commitment=data[start : start + 32],
        sealed_digest=data[start + 32 :],
    )


def entry_leaf_hash(row: StoredEntry) -> bytes:
    """Return the Merkle leaf hash of a stored entry."""
    return leaf_hash(leaf_input(row))


# -- offline verification --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What :func:`verify_log` found for one shard.

    ``first_bad`` is the index of the first entry that is missing, altered, out of place or
    forged (``None`` when everything checked); ``bad_node`` the ``(level, index)`` of a stored
    tree node that is missing or does not match the entries under it (the entries themselves
    verified, but proofs built from that node would fail); ``unverified`` counts entries after
    the largest checkpoint, which a later checkpoint will cover.
    """

    shard: int
    checked: int
    first_bad: int | None = None
    bad_node: tuple[int, int] | None = None
    problem: str = ""
    unverified: int = 0
    exact: bool = True

    @property
    def ok(self) -> bool:
        """Tell whether every entry the checkpoints cover, and every node over them, verified."""
        return self.first_bad is None and self.bad_node is None


StoredNode = Callable[[int, int], bytes | None]
#: The stored node table as ``(level, index, digest)`` rows, ordered by level then index.
StoredNodes = Iterable[tuple[int, int, bytes]]


def verify_log(
    shard: int,
    rows: Iterable[StoredEntry],
    size: int,
    root: bytes,
    stored_node: StoredNode | None = None,
    *,
    others: Iterable[tuple[int, bytes]] = (),
    stored_nodes: StoredNodes | None = None,
) -> Verdict:
    """Recompute one shard's tree from its stored rows (ordered by ``seq``) and check it.

    The rows must be numbered ``0, 1, 2…`` in order, and for the checkpoint (``size``, ``root``)
    and every other checkpoint in ``others`` (``(size, root)`` pairs, e.g. every stored one,
    older or newer) the first ``size`` rows must hash to ``root``: a journal truncated or
    rewritten after a checkpoint kept apart still fails against the newer ones. When a root
    differs, the stored node table (``stored_node(level, index)``, the node hashes written at
    append time) is authenticated against that root from the top down and followed to the
    first leaf that differs, so the verdict names that entry exactly — also when entries were
    deleted and the rest renumbered; without a usable node table the verdict gives the first
    range that is wrong. When every entry verifies, ``stored_nodes`` (the whole node table,
    ordered) is compared with the tree recomputed from the entries, so that an edited or
    deleted node, which would make proofs fail, is reported too.
    """
    leaves: list[bytes] = []
    for row in rows:
        expected = len(leaves)
        if row.shard != shard:
            return Verdict(
                shard=shard, checked=expected, first_bad=expected, problem="entry from another shard"
            )
        if row.seq != expected:
            if row.seq > expected:
                problem = f"entry {expected} is missing (the next stored entry is {row.seq})"
                return Verdict(shard=shard, checked=expected, first_bad=expected, problem=problem)
            problem = f"entry {expected} is stored under index {row.seq} again (duplicate or out of order)"
            return Verdict(shard=shard, checked=expected, first_bad=expected, problem=problem)
        try:
            leaves.append(entry_leaf_hash(row))
        except AuditChainError as exc:
            return Verdict(shard=shard, checked=expected, first_bad=expected, problem=exc.message)
    heads = sorted({(size, root), *others})
    compact = CompactRange()
    for head_size, head_root in heads:
        if head_size <= len(leaves):
            compact.extend(leaves[compact.size : head_size])
            if compact.root() == head_root:
                continue
        index, exact = _locate(leaves, head_size, head_root, stored_node)
        if index >= len(leaves):
            problem = f"the journal ends at entry {len(leaves)}; a checkpoint covers {head_size} entries"
        else:
            problem = "entry does not match the checkpoint (altered, reordered, renumbered or forged)"
        return Verdict(
            shard=shard,
            checked=min(head_size, len(leaves)),
            first_bad=index,
            problem=problem,
            unverified=max(0, len(leaves) - head_size),
            exact=exact,
        )
    largest = heads[-1][0]
    if stored_nodes is not None:
        bad = _check_nodes(leaves[:largest], stored_nodes)
        if bad is not None:
            (level, index), problem = bad
            return Verdict(
                shard=shard,
                checked=largest,
                bad_node=(level, index),
                problem=problem,
                unverified=len(leaves) - largest,
            )
    return Verdict(shard=shard, checked=largest, unverified=len(leaves) - largest)


def _check_nodes(leaves: Sequence[bytes], stored: StoredNodes) -> tuple[tuple[int, int], str] | None:
    """Compare the stored perfect-subtree nodes over ``leaves`` with their recomputed hashes.

    Returns the first node (by level, then index) that is missing or differs, and why. Nodes
    over entries after ``leaves`` are not checked: no checkpoint covers them yet.
    """
    level, current, following = 0, list(leaves), 0
    for stored_level, index, digest in stored:
        while stored_level > level:
            if following < len(current):
                return (level, following), "missing"
            current = [node_hash(current[i], current[i + 1]) for i in range(0, len(current) - 1, 2)]
            level, following = level + 1, 0
        if index >= len(current):
            continue
        if index > following:
            return (level, following), "missing"
        if digest != current[index]:
            return (level, index), "altered (it does not match the entries under it)"
        following = index + 1
    while current:
        if following < len(current):
            return (level, following), "missing"
        current = [node_hash(current[i], current[i + 1]) for i in range(0, len(current) - 1, 2)]
        level, following = level + 1, 0
    return None


def _locate(
    leaves: Sequence[bytes], size: int, root: bytes, stored_node: StoredNode | None
) -> tuple[int, bool]:
    """Return the first of the ``size`` leaves whose recomputed hash differs from the authenticated stored tree.

    Descends from the root: at each range the stored children must hash to the authenticated
    parent; the leftmost child whose recomputed hash differs (or that reaches past the stored
    leaves) holds the first bad leaf. When the node table cannot be authenticated at some
    level, returns the start of that range, inexact.
    """
    if stored_node is None:
        return 0 if size <= len(leaves) else len(leaves), False
    get = _strict(stored_node)
    try:
        if root_at(get, size) != root:
            return 0, False
    except (AuditChainError, LookupError):
        return 0, False
    lo, hi, authentic = 0, size, root
    while hi - lo > 1:
        split = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        try:
            left, right = _stored_range(get, lo, split), _stored_range(get, split, hi)
        except LookupError:
            return lo, False
        if node_hash(left, right) != authentic:
            return lo, False
        if split > len(leaves) or _recomputed(leaves, lo, split) != left:
            hi, authentic = split, left
        else:
            lo, authentic = split, right
    return lo, True


def _strict(stored_node: StoredNode) -> Callable[[int, int], bytes]:
    def get(level: int, index: int) -> bytes:
        digest = stored_node(level, index)
        if digest is None:
            raise LookupError(f"node {level}/{index} is not stored")
        return digest

    return get


def _stored_range(get: Callable[[int, int], bytes], lo: int, hi: int) -> bytes:
    """Return MTH of leaves ``[lo, hi)`` from stored perfect nodes (``lo`` aligned as in RFC 6962)."""
    parts: list[bytes] = []
    position = lo
    width = hi - lo
    for level in reversed(range(width.bit_length())):
        if (width >> level) & 1:
            parts.append(get(level, position >> level))
            position += 1 << level
    digest = parts[-1]
    for part in reversed(parts[:-1]):
        digest = node_hash(part, digest)
    return digest


def _recomputed(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    compact = CompactRange()
    compact.extend(leaves[lo:hi])
    return compact.root()
