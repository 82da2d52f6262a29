"""The journal's entries and leaves: canonical content, salted commitments, leaf layout, shards."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.domain.errors import AuditChainError
from carnet.domain.journal import (
    Entry,
    StoredEntry,
    commitment,
    leaf_input,
    micros,
    parse_leaf_input,
    shard_of,
    verify_log,
)
from carnet.domain.merkle import CompactRange, leaf_hash, root_hash

WHEN = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=UTC)


def _entry(**changes: object) -> Entry:
    fields: dict[str, object] = {
        "recorded": WHEN,
        "patient_id": "p1",
        "actor_kind": "professional",
        "actor_id": "810001234567",
        "actor_display": "Dr Étienne Lefèvre",
        "action": "read",
        "resource_type": "Observation",
        "targets": ("Observation/o1/_history/1",),
        "mode": "break_glass",
        "reasons": ("break-glass",),
        "justification": "patient inconscient",
    }
    fields.update(changes)
    return Entry(**fields)  # type: ignore[arg-type]


def test_entry_content_round_trips() -> None:
    """An entry's canonical bytes parse back to the same entry."""
    entry = _entry()
    assert Entry.from_content(entry.content()) == entry


def test_entry_content_is_canonical() -> None:
    """The same entry always gives the same bytes, with sorted keys."""
    assert _entry().content() == _entry().content()
    assert _entry().content().startswith(b'{"action":"read","actor":')


def test_garbage_is_not_an_entry() -> None:
    """Bytes that are not an entry raise AuditChainError."""
    with pytest.raises(AuditChainError):
        Entry.from_content(b'{"action": "read"}')


def test_commitment_needs_a_16_byte_salt_and_depends_on_it() -> None:
    """The commitment changes with the salt, and a short salt is refused."""
    content = _entry().content()
    assert commitment(bytes(16), content) != commitment(b"\x01" + bytes(15), content)
    with pytest.raises(AuditChainError):
        commitment(bytes(8), content)


def _row(**changes: object) -> StoredEntry:
    fields: dict[str, object] = {
        "shard": 3,
        "seq": 41,
        "patient_id": "3f2c-aa",
        "recorded_at": WHEN,
        "commitment": bytes(range(32)),
        "sealed": b"sealed bytes",
    }
    fields.update(changes)
    return StoredEntry(**fields)  # type: ignore[arg-type]


def test_leaf_input_layout_parses_back() -> None:
    """Every stored field is in the leaf, and the leaf parses back to them."""
    leaf = parse_leaf_input(leaf_input(_row()))
    assert (leaf.shard, leaf.seq, leaf.recorded_micros, leaf.patient_id) == (3, 41, micros(WHEN), "3f2c-aa")
    assert (leaf.commitment, leaf.sealed_digest) == (
        bytes(range(32)),
        hashlib.sha256(b"sealed bytes").digest(),
    )


@pytest.mark.parametrize(
    "change",
    [
        {"shard": 4},
        {"seq": 42},
        {"patient_id": "3f2c-ab"},
        {"commitment": bytes(32)},
        {"sealed": b"sealed bytez"},
    ],
)
def test_every_stored_field_changes_the_leaf(change: dict[str, object]) -> None:
    """Changing any stored field changes the leaf input."""
    assert leaf_input(_row(**change)) != leaf_input(_row())


def test_a_leaf_of_another_format_is_refused() -> None:
    """A truncated or foreign leaf raises AuditChainError."""
    with pytest.raises(AuditChainError):
        parse_leaf_input(leaf_input(_row())[:-1])
    with pytest.raises(AuditChainError):
        parse_leaf_input(b"\x02" + leaf_input(_row())[1:])


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_shards_are_stable_and_in_range(patient_id: str, shards: int) -> None:
    """A record always lands in the same shard, within range."""
    assert shard_of(patient_id, shards) == shard_of(patient_id, shards)
    assert 0 <= shard_of(patient_id, shards) < shards


def test_verify_log_without_node_table_gives_a_range_start() -> None:
    """Without a stored node table, a bad journal is still caught (inexactly located)."""
    rows = [_row(shard=0, seq=i, commitment=bytes([i]) * 32) for i in range(10)]
    root = root_hash(leaf_hash(leaf_input(r)) for r in rows)
    assert verify_log(0, rows, 10, root).ok
    rows[6] = _row(shard=0, seq=6, commitment=bytes(32))
    verdict = verify_log(0, rows, 10, root)
    assert (verdict.ok, verdict.exact) == (False, False)


def _journal(size: int) -> tuple[list[StoredEntry], dict[tuple[int, int], bytes], bytes]:
    """A journal of ``size`` rows with its node table (as appending stores it) and its root."""
    rows = [
        _row(shard=0, seq=i, commitment=hashlib.sha256(bytes([i % 256, i // 256])).digest())
        for i in range(size)
    ]
    compact = CompactRange()
    nodes = {(n.level, n.index): n.digest for row in rows for n in compact.append(leaf_hash(leaf_input(row)))}
    return rows, nodes, compact.root()


@given(st.integers(min_value=1, max_value=70), st.integers(min_value=0), st.booleans())
def test_verify_log_names_any_edited_or_deleted_node(size: int, pick: int, delete: bool) -> None:
    """Every stored node is compared with the recomputed tree: an edited or deleted one is named exactly."""
    rows, nodes, root = _journal(size)
    ordered = sorted(nodes.items())
    assert verify_log(0, rows, size, root, stored_nodes=[(lv, ix, d) for (lv, ix), d in ordered]).ok
    level, index = ordered[pick % len(ordered)][0]
    if delete:
        broken = [item for item in ordered if item[0] != (level, index)]
    else:
        broken = [(key, bytes(32) if key == (level, index) else value) for key, value in ordered]
    verdict = verify_log(0, rows, size, root, stored_nodes=[(lv, ix, d) for (lv, ix), d in broken])
    assert (verdict.bad_node, verdict.problem.split(" ")[0]) == (
        (level, index),
        "missing" if delete else "altered",
    )


@given(st.integers(min_value=2, max_value=70), st.integers(min_value=0))
def test_verify_log_names_a_deleted_and_renumbered_entry(size: int, pick: int) -> None:
    """Deleting entry i and renumbering the rest is found at i (the node table leads there), not at the end."""
    rows, nodes, root = _journal(size)
    gone = pick % size
    renumbered = rows[:gone] + [
        _row(shard=0, seq=r.seq - 1, commitment=r.commitment) for r in rows[gone + 1 :]
    ]
    verdict = verify_log(0, renumbered, size, root, lambda level, index: nodes.get((level, index)))
    assert (verdict.first_bad, verdict.exact) == (gone, True)


def test_verify_log_checks_every_checkpoint_given() -> None:
    """A truncation after an older checkpoint still fails against a newer one passed in ``others``."""
    rows, nodes, root = _journal(30)
    old_root = root_hash(leaf_hash(leaf_input(r)) for r in rows[:10])
    assert verify_log(0, rows[:25], 10, old_root).ok
    verdict = verify_log(0, rows[:25], 10, old_root, lambda lv, ix: nodes.get((lv, ix)), others=[(30, root)])
    assert (verdict.first_bad, verdict.exact) == (25, True)
    assert "the journal ends at entry 25" in verdict.problem
