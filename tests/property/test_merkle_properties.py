"""Properties of ``carnet.domain.merkle`` against a naive transcription of the specifications.

``Reference`` is RFC 6962 section 2.1 written as the RFC writes it (MTH, PATH, PROOF and
SUBPROOF, recursive, over entries, with its own hashing), plus SUBTREE_SUBPROOF of the Merkle
Tree Certificates draft. The efficient code must give the same roots and the same proofs, every
proof must verify, and any single flipped bit must make verification raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carnet.domain import merkle
from carnet.domain.errors import AuditChainError

MAX_SIZE = 1024


def _largest_power_of_two_below(n: int) -> int:
    """The RFC's k: the largest power of two smaller than n (n > 1), found the slow way."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Reference:
    """RFC 6962 section 2.1 (and the MTC draft's subtree proofs) over ``entries``, memoised by range."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.entries = entries
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi])."""
        if (lo, hi) not in self._mth:
            n = hi - lo
            if n == 0:
                digest = hashlib.sha256(b"").digest()
            elif n == 1:
                digest = hashlib.sha256(b"\x00" + self.entries[lo]).digest()
            else:
                k = _largest_power_of_two_below(n)
                digest = hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()
            self._mth[lo, hi] = digest
        return self._mth[lo, hi]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]), m relative to lo."""
        n = hi - lo
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), for 0 < m <= n."""
        return self.subproof(m, 0, n, known=True)

    def subproof(self, m: int, lo: int, hi: int, *, known: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], known)."""
        n = hi - lo
        if m == n:
            return [] if known else [self.mth(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, known=known), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, known=False), self.mth(lo, lo + k)]

    def subtree_proof(self, start: int, end: int, n: int) -> list[bytes]:
        """SUBTREE_PROOF(start, end, D[n]) = SUBTREE_SUBPROOF(start, end, D[n], true)."""
        return self.subtree_subproof(start, end, 0, n, known=True)

    def subtree_subproof(self, start: int, end: int, lo: int, hi: int, *, known: bool) -> list[bytes]:
        """SUBTREE_SUBPROOF(start, end, D[lo:hi], known), start and end relative to lo."""
        n = hi - lo
        if start == 0 and end == n:
            return [] if known else [self.mth(lo, hi)]
        k = _largest_power_of_two_below(n)
        if end <= k:
            return [*self.subtree_subproof(start, end, lo, lo + k, known=known), self.mth(lo + k, hi)]
        if start >= k:
            return [*self.subtree_subproof(start - k, end - k, lo + k, hi, known=known), self.mth(lo, lo + k)]
        return [*self.subtree_subproof(0, end - k, lo + k, hi, known=False), self.mth(lo, lo + k)]


ENTRIES = [f"journal entry {i}".encode() for i in range(MAX_SIZE)]
LEAVES = [merkle.leaf_hash(entry) for entry in ENTRIES]
REFERENCE = Reference(ENTRIES)


def _node_table() -> dict[tuple[int, int], bytes]:
    """The node table a store would keep: every node reported by CompactRange.append."""
    compact = merkle.CompactRange()
    table = {}
    for leaf in LEAVES:
        for node in compact.append(leaf):
            table[node.level, node.index] = node.digest
    return table


NODES = _node_table()


def get_node(level: int, index: int) -> bytes:
    """Read one node of the table, as a store would."""
    return NODES[level, index]


def _flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


sizes = st.integers(min_value=1, max_value=MAX_SIZE)


@st.composite
def leaves_in_trees(draw: st.DrawFn) -> tuple[int, int]:
    """A tree size n and a leaf index below it."""
    size = draw(sizes)
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def tree_pairs(draw: st.DrawFn, *, min_old: int = 0) -> tuple[int, int]:
    """An old size m and a new size n with min_old <= m <= n."""
    new = draw(st.integers(min_value=max(1, min_old), max_value=MAX_SIZE))
    return draw(st.integers(min_value=min_old, max_value=new)), new


@st.composite
def subtrees_in_trees(draw: st.DrawFn) -> tuple[int, int, int]:
    """A valid subtree [start, end) and a tree size n >= end."""
    size = draw(sizes)
    width = draw(st.integers(min_value=1, max_value=size))
    alignment = 1 << (width - 1).bit_length()
    start = alignment * draw(st.integers(min_value=0, max_value=(size - width) // alignment))
    return start, start + width, size


# --------------------------------------------------------------------------- hashes and roots


def test_leaf_and_node_hashes_are_rfc6962() -> None:
    """A leaf hash is SHA-256(0x00 || entry) and a node hash SHA-256(0x01 || left || right)."""
    assert merkle.leaf_hash(b"entry") == hashlib.sha256(b"\x00entry").digest()
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()


def test_empty_tree_root() -> None:
    """The empty tree's root is SHA-256 of the empty string, however it is computed."""
    assert merkle.root_hash([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT
    assert merkle.root_at(get_node, 0) == merkle.EMPTY_ROOT


def test_roots_agree_with_the_reference_for_every_size() -> None:
    """For every size 1..1024, the compact range, the node table and root_hash give MTH(D[n])."""
    compact = merkle.CompactRange()
    for size in range(1, MAX_SIZE + 1):
        compact.append(LEAVES[size - 1])
        expected = REFERENCE.mth(0, size)
        assert compact.root() == expected
        assert merkle.root_at(get_node, size) == expected
        assert compact.peaks == tuple(get_node(*node) for node in _peak_nodes(size))


def _peak_nodes(size: int) -> list[tuple[int, int]]:
    """The (level, index) of the perfect subtrees that cover [0, size), largest first."""
    nodes, position = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def test_root_hash_agrees_with_the_reference() -> None:
    """root_hash gives MTH(D[n]) for every size to 128 and around every power of two to 1024."""
    # root_hash is CompactRange.extend then root(), checked above for every size; all sizes
    # here would cost O(n**2) hashes, so take the small ones and the edges of each level.
    edges = {size + delta for size in (2**i for i in range(11)) for delta in (-1, 0, 1)}
    for size in sorted(set(range(1, 129)) | edges - {0, MAX_SIZE + 1}):
        assert merkle.root_hash(LEAVES[:size]) == REFERENCE.mth(0, size)


def test_every_appended_node_is_its_subtree_hash() -> None:
    """Each node CompactRange.append reports is MTH of the 2**level leaves it covers."""
    for (level, index), digest in NODES.items():
        assert digest == REFERENCE.mth(index << level, (index + 1) << level)
    assert len(NODES) == 2 * MAX_SIZE - 1


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=200))
def test_root_of_any_entries(entries: list[bytes]) -> None:
    """The root of any list of entries is the reference MTH."""
    assert merkle.root_hash(merkle.leaf_hash(e) for e in entries) == Reference(entries).mth(0, len(entries))


@given(tree_pairs())
def test_compact_range_resumes_from_its_peaks(pair: tuple[int, int]) -> None:
    """A range rebuilt from a stored size and peaks continues exactly as the original."""
    stored, final = pair
    original = merkle.CompactRange()
    original.extend(LEAVES[:stored])
    resumed = merkle.CompactRange(size=stored, peaks=original.peaks)
    resumed.extend(LEAVES[stored:final])
    assert (resumed.size, resumed.root()) == (final, REFERENCE.mth(0, final))


@pytest.mark.parametrize(
    ("size", "peaks"),
    [(1, []), (0, [b"x" * 32]), (3, [b"x" * 32]), (2, [b"short"]), (-1, []), (2**64, [])],
)
def test_compact_range_refuses_a_bad_state(size: int, peaks: list[bytes]) -> None:
    """A stored state whose peaks do not match its size, or hold a short hash, is refused."""
    with pytest.raises(AuditChainError):
        merkle.CompactRange(size=size, peaks=peaks)


def test_compact_range_refuses_a_short_leaf() -> None:
    """Appending something that is not a 32-byte hash raises and leaves the range unchanged."""
    compact = merkle.CompactRange()
    with pytest.raises(AuditChainError):
        compact.append(b"entry")
    assert compact.size == 0


# --------------------------------------------------------------------------- inclusion


@given(leaves_in_trees())
def test_inclusion_proofs_agree_and_verify(leaf: tuple[int, int]) -> None:
    """Both provers give PATH(m, D[n]), and the proof verifies against the root."""
    size, index = leaf
    expected = REFERENCE.path(index, 0, size)
    assert merkle.inclusion_proof(LEAVES, index, size) == expected
    assert merkle.prove_inclusion(get_node, index, size) == expected
    merkle.verify_inclusion(LEAVES[index], index, size, expected, REFERENCE.mth(0, size))


def test_every_inclusion_proof_in_small_trees() -> None:
    """For every size up to 64 and every index, the proof is PATH(m, D[n]) and verifies."""
    for size in range(1, 65):
        root = REFERENCE.mth(0, size)
        for index in range(size):
            proof = merkle.prove_inclusion(get_node, index, size)
            assert proof == REFERENCE.path(index, 0, size)
            merkle.verify_inclusion(LEAVES[index], index, size, proof, root)


@settings(max_examples=300)
@given(leaves_in_trees(), st.data())
def test_inclusion_bit_flip_raises(leaf: tuple[int, int], data: st.DataObject) -> None:
    """Flipping any one bit of the leaf, a proof hash or the root makes verification raise."""
    size, index = leaf
    proof = merkle.prove_inclusion(get_node, index, size)
    values = [LEAVES[index], *proof, REFERENCE.mth(0, size)]
    target = data.draw(st.integers(min_value=0, max_value=len(values) - 1), label="target")
    values[target] = _flip(values[target], data.draw(st.integers(min_value=0, max_value=255), label="bit"))
    with pytest.raises(AuditChainError):
        merkle.verify_inclusion(values[0], index, size, values[1:-1], values[-1])


@given(leaves_in_trees())
def test_inclusion_proof_of_wrong_length_raises(leaf: tuple[int, int]) -> None:
    """A proof with one hash more, or one hash fewer, raises."""
    size, index = leaf
    proof = merkle.prove_inclusion(get_node, index, size)
    root = REFERENCE.mth(0, size)
    with pytest.raises(AuditChainError):
        merkle.verify_inclusion(LEAVES[index], index, size, [*proof, root], root)
    if proof:
        with pytest.raises(AuditChainError):
            merkle.verify_inclusion(LEAVES[index], index, size, proof[:-1], root)


@pytest.mark.parametrize(("index", "size"), [(8, 8), (9, 8), (0, 0), (-1, 8), (0, 2**64)])
def test_inclusion_index_out_of_range_raises(index: int, size: int) -> None:
    """Proving or verifying an index outside the tree raises."""
    with pytest.raises(AuditChainError):
        merkle.verify_inclusion(LEAVES[0], index, size, [], LEAVES[0])
    with pytest.raises(AuditChainError):
        merkle.prove_inclusion(get_node, index, size)


def test_inclusion_proof_beyond_the_leaves_raises() -> None:
    """Asking a list of 8 leaves for a proof in a tree of 9 raises."""
    with pytest.raises(AuditChainError):
        merkle.inclusion_proof(LEAVES[:8], 0, 9)


# --------------------------------------------------------------------------- consistency


@given(tree_pairs(min_old=1))
def test_consistency_proofs_agree_and_verify(pair: tuple[int, int]) -> None:
    """Both provers give PROOF(m, D[n]), and the proof verifies between the two roots."""
    old, new = pair
    expected = REFERENCE.proof(old, new)
    assert merkle.consistency_proof(LEAVES, old, new) == expected
    assert merkle.prove_consistency(get_node, old, new) == expected
    merkle.verify_consistency(old, new, REFERENCE.mth(0, old), REFERENCE.mth(0, new), expected)


def test_every_consistency_proof_in_small_trees() -> None:
    """For every m <= n <= 64, the proof is PROOF(m, D[n]) (empty from 0) and verifies."""
    for new in range(1, 65):
        for old in range(new + 1):
            proof = merkle.prove_consistency(get_node, old, new)
            assert proof == (REFERENCE.proof(old, new) if old else [])
            merkle.verify_consistency(old, new, REFERENCE.mth(0, old), REFERENCE.mth(0, new), proof)


@settings(max_examples=300)
@given(tree_pairs(min_old=1), st.data())
def test_consistency_bit_flip_raises(pair: tuple[int, int], data: st.DataObject) -> None:
    """Flipping any one bit of a proof hash or of either root makes verification raise."""
    old, new = pair
    proof = merkle.prove_consistency(get_node, old, new)
    values = [REFERENCE.mth(0, old), REFERENCE.mth(0, new), *proof]
    target = data.draw(st.integers(min_value=0, max_value=len(values) - 1), label="target")
    values[target] = _flip(values[target], data.draw(st.integers(min_value=0, max_value=255), label="bit"))
    with pytest.raises(AuditChainError):
        merkle.verify_consistency(old, new, values[0], values[1], values[2:])


@given(tree_pairs(min_old=1))
def test_consistency_proof_of_wrong_length_raises(pair: tuple[int, int]) -> None:
    """A proof with one hash more, or one hash fewer, raises."""
    old, new = pair
    proof = merkle.prove_consistency(get_node, old, new)
    roots = REFERENCE.mth(0, old), REFERENCE.mth(0, new)
    with pytest.raises(AuditChainError):
        merkle.verify_consistency(old, new, *roots, [*proof, roots[0]])
    if proof:
        with pytest.raises(AuditChainError):
            merkle.verify_consistency(old, new, *roots, proof[:-1])


@given(tree_pairs(min_old=1).filter(lambda pair: pair[0] < pair[1]))
def test_rolled_back_tree_raises(pair: tuple[int, int]) -> None:
    """A new tree head smaller than the old one is refused, whatever the proof."""
    old, new = pair
    with pytest.raises(AuditChainError):
        merkle.verify_consistency(new, old, REFERENCE.mth(0, new), REFERENCE.mth(0, old), [])
    with pytest.raises(AuditChainError):
        merkle.prove_consistency(get_node, new, old)


@given(sizes)
def test_empty_tree_is_consistent_with_every_tree(size: int) -> None:
    """From the empty tree the proof is empty, and the old root must be SHA-256("")."""
    root = REFERENCE.mth(0, size)
    merkle.verify_consistency(0, size, merkle.EMPTY_ROOT, root, [])
    with pytest.raises(AuditChainError):
        merkle.verify_consistency(0, size, root, root, [])
    with pytest.raises(AuditChainError):
        merkle.verify_consistency(0, size, merkle.EMPTY_ROOT, root, [root])


def test_a_tree_of_size_zero_has_the_empty_root() -> None:
    """Between two empty trees any root but SHA-256("") is refused; an empty subtree's root must be it too."""
    merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    merkle.verify_subtree_consistency(0, 0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    other = LEAVES[0]
    for old_root, new_root in ((merkle.EMPTY_ROOT, other), (other, merkle.EMPTY_ROOT), (other, other)):
        with pytest.raises(AuditChainError):
            merkle.verify_consistency(0, 0, old_root, new_root, [])
    for subtree_root in (other, b"short"):
        with pytest.raises(AuditChainError):
            merkle.verify_subtree_consistency(0, 0, 0, subtree_root, merkle.EMPTY_ROOT, [])
    # The tree's root plays no part for an empty range (as in the transparency-dev vectors).
    merkle.verify_subtree_consistency(0, 0, 0, merkle.EMPTY_ROOT, other, [])


# --------------------------------------------------------------------------- subtrees


def test_subtrees_are_exactly_the_nodes_of_rfc6962_trees() -> None:
    """is_valid_subtree accepts exactly the ranges that are nodes of some tree of size <= 64."""

    def nodes(lo: int, hi: int) -> set[tuple[int, int]]:
        if hi - lo == 1:
            return {(lo, hi)}
        k = _largest_power_of_two_below(hi - lo)
        return {(lo, hi)} | nodes(lo, lo + k) | nodes(lo + k, hi)

    all_nodes = set().union(*(nodes(0, size) for size in range(1, 65)))
    valid = {(s, e) for e in range(1, 65) for s in range(e) if merkle.is_valid_subtree(s, e)}
    assert valid == all_nodes


@given(subtrees_in_trees())
def test_subtree_consistency_proofs_agree_and_verify(subtree: tuple[int, int, int]) -> None:
    """The prover gives SUBTREE_PROOF(start, end, D[n]), and it verifies between the two roots."""
    start, end, size = subtree
    proof = merkle.prove_subtree_consistency(get_node, start, end, size)
    assert proof == REFERENCE.subtree_proof(start, end, size)
    merkle.verify_subtree_consistency(
        start, end, size, REFERENCE.mth(start, end), REFERENCE.mth(0, size), proof
    )


@settings(max_examples=300)
@given(subtrees_in_trees(), st.data())
def test_subtree_consistency_bit_flip_raises(subtree: tuple[int, int, int], data: st.DataObject) -> None:
    """Flipping any one bit of a proof hash or of either root makes verification raise."""
    start, end, size = subtree
    proof = merkle.prove_subtree_consistency(get_node, start, end, size)
    values = [REFERENCE.mth(start, end), REFERENCE.mth(0, size), *proof]
    target = data.draw(st.integers(min_value=0, max_value=len(values) - 1), label="target")
    values[target] = _flip(values[target], data.draw(st.integers(min_value=0, max_value=255), label="bit"))
    with pytest.raises(AuditChainError):
        merkle.verify_subtree_consistency(start, end, size, values[0], values[1], values[2:])


@given(subtrees_in_trees(), st.data())
def test_subtree_inclusion_proofs_verify(subtree: tuple[int, int, int], data: st.DataObject) -> None:
    """A subtree inclusion proof is PATH within the subtree and verifies against its root."""
    start, end, _ = subtree
    index = data.draw(st.integers(min_value=start, max_value=end - 1), label="index")
    proof = merkle.prove_subtree_inclusion(get_node, index, start, end)
    assert proof == REFERENCE.path(index - start, start, end)
    root = REFERENCE.mth(start, end)
    merkle.verify_subtree_inclusion(LEAVES[index], index, start, end, proof, root)
    with pytest.raises(AuditChainError):
        merkle.verify_subtree_inclusion(LEAVES[index], index, start, end, proof, _flip(root, 0))


@given(subtrees_in_trees())
def test_consistency_is_subtree_consistency_from_zero(subtree: tuple[int, int, int]) -> None:
    """With start 0, the subtree consistency proof is the RFC 9162 consistency proof."""
    _, end, size = subtree
    assert merkle.prove_subtree_consistency(get_node, 0, end, size) == merkle.prove_consistency(
        get_node, end, size
    )
