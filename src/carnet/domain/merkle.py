"""The Merkle tree of the access journal: hashes, proofs and their verification.

The tree is the one of RFC 6962 section 2.1 (kept unchanged by RFC 9162 and
https://c2sp.org/merkle-tree), over SHA-256::

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node hash(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of two < n

Every function here takes and returns *leaf hashes*, never entries: the journal
hashes an entry once, with :func:`leaf_hash`, when it appends it.

Three ways to get a root or a proof, for three sizes of data:

* A list of leaf hashes in memory: :func:`root_hash`, :func:`inclusion_proof`,
  :func:`consistency_proof`. Simple, O(n); for tests and small trees.
* An append-only log of millions of entries: :class:`CompactRange` keeps only the
  O(log n) "peaks" of the tree, so appending a leaf and reading the new root are
  O(log n). Each :meth:`CompactRange.append` returns the :class:`Node` objects it
  completed; the store writes them to a node table keyed by ``(level, index)``.
* Proofs against such a table: :func:`prove_inclusion`, :func:`prove_consistency`
  and :func:`root_at` take a :data:`NodeGetter` ``get_node(level, index)`` that
  returns the hash of the *perfect* subtree of ``2**level`` leaves starting at
  leaf ``index * 2**level``. They make O(log n) calls to it, so a proof costs
  O(log n) table reads and the leaves never have to be in memory. A store that
  keeps only leaf hashes can wrap its ``get_leaf_hash(i)`` with
  :func:`node_getter`, at O(n) cost per proof.

Proofs are lists of 32-byte hashes, ordered from the leaf (or old subtree) up to
the root, exactly as RFC 9162 sections 2.1.3 and 2.1.4 define them; the subtree
proofs follow the Merkle Tree Certificates draft (draft-ietf-plants-merkle-tree-certs,
"Subtrees"). Verification never returns ``False``: every bad proof, hash of the
wrong length, size or index out of range, or rolled-back tree raises
:class:`~carnet.domain.errors.AuditChainError`.

Policy where the specifications leave a choice (see tests/vectors):

* The empty tree (size 0) has the root ``SHA-256("")`` and is consistent with
  every tree through the empty proof; a root that is not ``SHA-256("")`` for
  size 0 is refused. The same holds for an empty subtree range.
* Every hash given to a verifier, the roots included, must be 32 bytes long,
  even where the check would otherwise pass (two equal roots of equal sizes).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from carnet.domain.errors import AuditChainError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "CompactRange",
    "LeafGetter",
    "Node",
    "NodeGetter",
    "consistency_proof",
    "inclusion_proof",
    "is_valid_subtree",
    "leaf_hash",
    "node_getter",
    "node_hash",
    "prove_consistency",
    "prove_inclusion",
    "prove_subtree_consistency",
    "prove_subtree_inclusion",
    "root_at",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

HASH_SIZE = 32
#: MTH({}), the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Tree sizes are unsigned 64-bit integers, as in checkpoints and RFC 9162.
MAX_TREE_SIZE = 2**64 - 1

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

#: ``get_node(level, index)`` -> hash of the perfect subtree over leaves
#: ``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf hash.
NodeGetter = Callable[[int, int], bytes]
#: ``get_leaf_hash(index)`` -> the leaf hash at ``index``.
LeafGetter = Callable[[int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)`` of a journal entry."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """The hash of a perfect subtree: ``2**level`` leaves from leaf ``index * 2**level``."""

    level: int
    index: int
    digest: bytes


class CompactRange:
    """The state of a growing tree in O(log n) space: the roots of its perfect subtrees.

    A tree of ``size`` leaves splits into one perfect subtree per set bit of
    ``size``, largest (leftmost) first; ``peaks`` holds their hashes in that
    order. Appending a leaf merges equal-sized peaks like a binary counter
    (O(log n) hashes, O(1) amortised) and :meth:`root` folds the peaks from the
    right (O(log n) hashes). The store persists ``size`` and ``peaks`` with each
    tree head and rebuilds the range with ``CompactRange(size=..., peaks=...)``.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self, *, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        """Start from the empty tree, or resume from a stored ``size`` and ``peaks``.

        Raises:
            AuditChainError: if ``size`` is out of range, the number of peaks is not
                the number of set bits of ``size``, or a peak is not 32 bytes long.
        """
        _check_size(size, "Compact range size")
        if len(peaks) != size.bit_count():
            raise AuditChainError(
                f"A compact range of size {size} has {size.bit_count()} peaks, not {len(peaks)}; "
                "resume it from the peaks stored with that size."
            )
        for peak in peaks:
            _check_hash(peak, "Compact range peak")
        self._size = size
        self._peaks = list(peaks)

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """The hashes of the perfect subtrees covering the leaves, largest first."""
        return tuple(self._peaks)

    def append(self, leaf: bytes) -> list[Node]:
        """Append a leaf hash; return the nodes it completed, from the leaf up.

        The first node returned is the leaf itself (level 0); each next one is
        the parent completed by merging with the peak on its left. Writing them
        all to a node table is what :func:`prove_inclusion` and friends read.

        Raises:
            AuditChainError: if ``leaf`` is not 32 bytes long or the tree is full.
        """
        index = self._size
        digests = self._push(leaf)
        return [Node(level=level, index=index >> level, digest=d) for level, d in enumerate(digests)]

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append every leaf hash of ``leaves`` in order, without reporting nodes.

        Raises:
            AuditChainError: as :meth:`append`; the leaves before the bad one stay appended.
        """
        for leaf in leaves:
            self._push(leaf)

    def _push(self, leaf: bytes) -> list[bytes]:
        """Append ``leaf``; return the hashes of the nodes it completed, level 0 first."""
        _check_hash(leaf, "Leaf hash")
        size = self._size
        if size == MAX_TREE_SIZE:
            raise AuditChainError(f"The tree already holds {MAX_TREE_SIZE} leaves; start a new journal.")
        peaks = self._peaks
        digests = [leaf]
        # Each trailing one bit of the old size is a peak of the same size as the
        # subtree being carried: merge them, exactly like adding 1 in binary.
        while size & 1:
            digests.append(node_hash(peaks.pop(), digests[-1]))
            size >>= 1
        peaks.append(digests[-1])
        self._size += 1
        return digests

    def root(self) -> bytes:
        """Return the root hash (MTH) of the tree of :attr:`size` leaves."""
        return _fold(self._peaks) if self._peaks else EMPTY_ROOT

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def root_hash(leaves: Iterable[bytes]) -> bytes:
    """Return the root hash (MTH) of the tree over ``leaves``, in O(n) time and O(log n) space.

    Raises:
        AuditChainError: if a leaf hash is not 32 bytes long.
    """
    compact = CompactRange()
    compact.extend(leaves)
    return compact.root()


def node_getter(get_leaf_hash: LeafGetter) -> NodeGetter:
    """Wrap a leaf-hash getter into a :data:`NodeGetter` that recomputes each node.

    A node at ``level`` costs ``2**level`` leaf reads, so a proof over ``n``
    leaves costs O(n); a store with a node table should pass its own getter.
    """

    def get_node(level: int, index: int) -> bytes:
        first = index << level
        compact = CompactRange()
        compact.extend(get_leaf_hash(i) for i in range(first, first + (1 << level)))
        return compact.root()

    return get_node


def root_at(get_node: NodeGetter, size: int) -> bytes:
    """Return the root hash of the tree of the first ``size`` leaves, in O(log n) node reads.

    Raises:
        AuditChainError: if ``size`` is out of range.
    """
    _check_size(size, "Tree size")
    return _range_hash(get_node, 0, size) if size else EMPTY_ROOT


# --------------------------------------------------------------------------- proofs


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves.

    Raises:
        AuditChainError: if ``size`` exceeds ``len(leaves)`` or ``index`` is not below ``size``.
    """
    _check_leaves(leaves, size)
    return prove_inclusion(node_getter(leaves.__getitem__), index, size)


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """Return the consistency proof from the first ``old_size`` leaves to the first ``new_size``.

    Raises:
        AuditChainError: if ``new_size`` exceeds ``len(leaves)`` or ``old_size > new_size``.
    """
    _check_leaves(leaves, new_size)
    return prove_consistency(node_getter(leaves.__getitem__), old_size, new_size)


def prove_inclusion(get_node: NodeGetter, index: int, size: int) -> list[bytes]:
    """Return PATH(index, D[size]) (RFC 9162 2.1.3.1) using O(log n) calls to ``get_node``.

    Raises:
        AuditChainError: if ``size`` is out of range or ``index`` is not below ``size``.
    """
    _check_index(index, size)
    return _prove(get_node, index, index + 1, size)


def prove_consistency(get_node: NodeGetter, old_size: int, new_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[new_size]) (RFC 9162 2.1.4.1) using O(log n) calls to ``get_node``.

    The proof from size 0 or between equal sizes is empty.

    Raises:
        AuditChainError: if a size is out of range or ``old_size > new_size``.
    """
    _check_sizes(old_size, new_size)
    if old_size == 0:
        return []
    return _prove(get_node, 0, old_size, new_size)


def is_valid_subtree(start: int, end: int) -> bool:
    """Tell whether ``[start, end)`` is a subtree in the sense of the Merkle Tree Certificates draft.

    A subtree is non-empty (``0 <= start < end``) and ``start`` is a multiple of
    the smallest power of two not below ``end - start``. The nodes of an RFC 6962
    tree are exactly these ranges, so a subtree's hash is ``MTH(D[start:end])``.
    """
    if not 0 <= start < end <= MAX_TREE_SIZE:
        return False
    return start % _bit_ceil(end - start) == 0


def prove_subtree_inclusion(get_node: NodeGetter, index: int, start: int, end: int) -> list[bytes]:
    """Return the proof that leaf ``index`` is in the subtree ``[start, end)``.

    It is the inclusion proof of ``index - start`` in the tree ``D[start:end]``.

    Raises:
        AuditChainError: if ``[start, end)`` is not a subtree or ``index`` is outside it.
    """
    _check_subtree(start, end)
    if not start <= index < end:
        raise AuditChainError(
            f"Leaf index {index} is outside the subtree [{start}, {end}); ask for an index inside it."
        )
    return _prove(get_node, index, index + 1, end, base=start)


def prove_subtree_consistency(get_node: NodeGetter, start: int, end: int, size: int) -> list[bytes]:
    """Return the proof that the subtree ``[start, end)`` is part of the tree of ``size`` leaves.

    This is SUBTREE_PROOF of the Merkle Tree Certificates draft; with
    ``start == 0`` it is the RFC 9162 consistency proof from ``end`` to ``size``.

    Raises:
        AuditChainError: if ``[start, end)`` is not a subtree or ``end > size``.
    """
    _check_subtree(start, end)
    _check_sizes(end, size)
    return _prove(get_node, start, end, size)


# --------------------------------------------------------------------------- verification


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` proves leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``.

    Raises:
        AuditChainError: if the proof does not verify, a hash is not 32 bytes long,
            or ``index`` is not below ``size``.
    """
    _check_hash(leaf, "Leaf hash")
    _check_hash(root, "Root hash")
    _check_proof(proof)
    _check_index(index, size)
    _, computed = _chain(index, index + 1, size, leaf, proof)
    if computed != root:
        raise AuditChainError(
            f"Inclusion proof for leaf {index} does not lead to the root of the tree of size {size}; "
            "the entry, the proof or the tree head was altered."
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that ``proof`` proves the tree (``new_size``, ``new_root``) extends the old one.

    The empty tree is consistent with every tree through the empty proof, as
    long as ``old_root`` is ``SHA-256("")``.

    Raises:
        AuditChainError: if the proof does not verify, a hash is not 32 bytes long,
            or ``new_size < old_size`` (the journal was rolled back).
    """
    _check_sizes(old_size, new_size)
    if old_size == new_size == 0:
        _check_empty_tree(old_root, proof)
        _check_empty_tree(new_root, proof)
        return
    if old_size == new_size:
        # A tree is consistent with itself (RFC 9162 §2.1.4.2).
        _check_same_tree(
            old_root,
            new_root,
            proof,
            f"Two tree heads of the same size {old_size} have different roots: the journal forked.",
        )
        return
    _check_hash(old_root, "Old root hash")
    _check_hash(new_root, "New root hash")
    _check_proof(proof)
    if old_size == 0:
        _check_empty_tree(old_root, proof)
        if new_size == 0:
            _check_empty_tree(new_root, proof)
        return
    old_computed, new_computed = _chain(0, old_size, new_size, old_root, proof)
    if old_computed != old_root or new_computed != new_root:
        raise AuditChainError(
            f"Consistency proof from size {old_size} to size {new_size} does not match the two roots; "
            "the journal was rewritten or the proof is corrupt."
        )


def verify_subtree_inclusion(
    leaf: bytes, index: int, start: int, end: int, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """Check that ``proof`` proves leaf hash ``leaf`` at ``index`` in the subtree ``[start, end)``.

    Raises:
        AuditChainError: if the proof does not verify, a hash is not 32 bytes long,
            ``[start, end)`` is not a subtree, or ``index`` is outside it.
    """
    _check_subtree(start, end)
    if not start <= index < end:
        raise AuditChainError(
            f"Leaf index {index} is outside the subtree [{start}, {end}); ask for an index inside it."
        )
    verify_inclusion(leaf, index - start, end - start, proof, subtree_root)


def verify_subtree_consistency(
    start: int, end: int, size: int, subtree_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that ``proof`` proves the subtree ``[start, end)`` is part of the tree (``size``, ``root``).

    An empty range (``start == end <= size``) is part of every tree through the
    empty proof, as long as ``subtree_root`` is ``SHA-256("")``.

    Raises:
        AuditChainError: if the proof does not verify, a hash is not 32 bytes long,
            ``[start, end)`` is not a subtree, or ``end > size``.
    """
    if start == end:
        # An empty range is part of every tree: only the range and its root are checked (as
        # the reference verifier does, the tree's root plays no part).
        _check_sizes(end, size)
        _check_empty_tree(subtree_root, proof)
        return
    _check_subtree(start, end)
    _check_sizes(end, size)
    if start == 0 and end == size:
        _check_same_tree(
            subtree_root, root, proof, f"The subtree [0, {size}) is the whole tree, yet its root differs."
        )
        return
    _check_hash(subtree_root, "Subtree root hash")
    _check_hash(root, "Root hash")
    _check_proof(proof)
    sub_computed, computed = _chain(start, end, size, subtree_root, proof)
    if sub_computed != subtree_root or computed != root:
        raise AuditChainError(
            f"Subtree consistency proof for [{start}, {end}) in the tree of size {size} does not match "
            "the two roots; the journal was rewritten or the proof is corrupt."
        )


# --------------------------------------------------------------------------- the walk


class _Step(enum.Enum):
    """Where the sibling hash sits on one level of the path from the root to a subtree."""

    RIGHT = enum.auto()  # right of the subtree: only the tree's hash takes it in
    LEFT = enum.auto()  # left of the subtree: only the tree's hash takes it in
    SPLIT = enum.auto()  # left, and the start of the subtree: both hashes take it in


def _descend(start: int, end: int, size: int) -> tuple[list[tuple[_Step, int, int]], tuple[int, int] | None]:
    """Walk from the root of ``D[0:size]`` down to the subtree ``[start, end)``.

    This is the recursion of RFC 9162 SUBPROOF (and of SUBTREE_PROOF of the
    Merkle Tree Certificates draft), unrolled: it returns each level's sibling
    as ``(step, lo, hi)``, from the root down, and the range whose hash the
    proof must carry first, or ``None`` when the verifier already knows it (it
    is then the subtree itself, or the leaf for an inclusion proof).

    Requires a valid subtree with ``end <= size``: a subtree then never straddles
    a split point unless it starts on the left edge of the current node.
    """
    steps: list[tuple[_Step, int, int]] = []
    lo, hi = 0, size
    known = True
    while start != lo or end != hi:
        mid = lo + _split_point(hi - lo)
        if end <= mid:
            steps.append((_Step.RIGHT, mid, hi))
            hi = mid
        elif start >= mid:
            steps.append((_Step.LEFT, lo, mid))
            lo = mid
        else:
            # start == lo here. The right part [mid, end) is new to the verifier,
            # so its hash must come with the proof (SUBPROOF(m - k, D[k:n], false)).
            steps.append((_Step.SPLIT, lo, mid))
            lo = start = mid
            known = False
    return steps, None if known else (lo, hi)


def _prove(get_node: NodeGetter, start: int, end: int, size: int, *, base: int = 0) -> list[bytes]:
    """Return the proof for the subtree ``[start, end)`` of the tree over leaves ``[base, base + size)``.

    ``start`` and ``end`` are absolute leaf indices; ``size`` is the absolute end
    of the tree, which starts at leaf ``base`` (0 except for subtree inclusion).
    """
    steps, first = _descend(start - base, end - base, size - base)
    proof = [] if first is None else [_range_hash(get_node, base + first[0], base + first[1])]
    proof.extend(_range_hash(get_node, base + lo, base + hi) for _, lo, hi in reversed(steps))
    return proof


def _chain(start: int, end: int, size: int, seed: bytes, proof: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Recompute ``(MTH(D[start:end]), MTH(D[0:size]))`` from a proof, bottom-up.

    ``seed`` is the hash the verifier already holds: the leaf hash for an
    inclusion proof, the old (sub)tree root for a consistency proof.

    Raises:
        AuditChainError: if the proof does not have the length the sizes require.
    """
    steps, first = _descend(start, end, size)
    expected = len(steps) + (first is not None)
    if len(proof) != expected:
        raise AuditChainError(
            f"Proof has {len(proof)} hashes where the range [{start}, {end}) in the tree of size {size} "
            f"needs {expected}; fetch the proof for these exact sizes."
        )
    hashes = iter(proof)
    subtree = tree = seed if first is None else next(hashes)
    for (step, _, _), sibling in zip(reversed(steps), hashes, strict=True):
        if step is _Step.RIGHT:
            tree = node_hash(tree, sibling)
        elif step is _Step.LEFT:
            tree = node_hash(sibling, tree)
        else:
            tree = node_hash(sibling, tree)
            subtree = node_hash(sibling, subtree)
    return subtree, tree


def _range_hash(get_node: NodeGetter, lo: int, hi: int) -> bytes:
    """Return MTH(D[lo:hi]) for a subtree ``[lo, hi)``, from its perfect parts.

    Because ``lo`` is aligned on the smallest power of two not below ``hi - lo``,
    the range splits into one perfect subtree per set bit of ``hi - lo``,
    largest first, and MTH folds them from the right.
    """
    width = hi - lo
    parts: list[bytes] = []
    position = lo
    for level in reversed(range(width.bit_length())):
        if (width >> level) & 1:
            parts.append(get_node(level, position >> level))
            position += 1 << level
    return _fold(parts)


def _fold(parts: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree hashes, largest first, into the hash of the range they cover."""
    digest = parts[-1]
    for part in reversed(parts[:-1]):
        digest = node_hash(part, digest)
    return digest


def _split_point(width: int) -> int:
    """Return the largest power of two strictly below ``width`` (``width >= 2``)."""
    return 1 << ((width - 1).bit_length() - 1)


def _bit_ceil(width: int) -> int:
    """Return the smallest power of two not below ``width`` (``width >= 1``)."""
    return 1 << (width - 1).bit_length()


# --------------------------------------------------------------------------- checks


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes):
        raise AuditChainError(f"{what} is a {type(value).__name__}; pass the hash as bytes.")
    if len(value) != HASH_SIZE:
        raise AuditChainError(f"{what} is {len(value)} bytes long; a SHA-256 hash is {HASH_SIZE} bytes.")


def _check_proof(proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        _check_hash(element, f"Proof hash {position}")


def _check_size(size: int, what: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise AuditChainError(f"{what} {size!r} is not an integer from 0 to {MAX_TREE_SIZE}.")


def _check_index(index: int, size: int) -> None:
    _check_size(size, "Tree size")
    _check_size(index, "Leaf index")
    if index >= size:
        raise AuditChainError(
            f"Leaf index {index} is outside the tree of size {size}; ask for an index below the size."
        )


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_size(old_size, "Old tree size")
    _check_size(new_size, "New tree size")
    if new_size < old_size:
        raise AuditChainError(
            f"Tree size went back from {old_size} to {new_size}; a journal only grows, "
            "so this tree head must be rejected."
        )


def _check_subtree(start: int, end: int) -> None:
    _check_size(start, "Subtree start")
    _check_size(end, "Subtree end")
    if not is_valid_subtree(start, end):
        raise AuditChainError(
            f"[{start}, {end}) is not a subtree; it must be non-empty and start on a multiple of "
            "the smallest power of two not below its width."
        )


def _check_same_tree(root: bytes, other: bytes, proof: Sequence[bytes], differs: str) -> None:
    """A tree proved against itself: the roots are the same bytes (as the transparency-dev
    reference, whatever their length) and the proof is empty.

    Raises:
        AuditChainError: ``differs`` when the roots differ; the proof is not empty.
    """
    if root != other:
        raise AuditChainError(differs)
    if proof:
        raise AuditChainError("A proof between a tree and itself must be empty; drop its hashes.")


def _check_empty_tree(root: bytes, proof: Sequence[bytes]) -> None:
    if root != EMPTY_ROOT:
        raise AuditChainError("The root of an empty tree must be SHA-256 of the empty string.")
    if proof:
        raise AuditChainError("A proof from an empty tree must be empty; drop its hashes.")


def _check_leaves(leaves: Sequence[bytes], size: int) -> None:
    _check_size(size, "Tree size")
    if size > len(leaves):
        raise AuditChainError(f"Tree size {size} exceeds the {len(leaves)} leaves given.")
