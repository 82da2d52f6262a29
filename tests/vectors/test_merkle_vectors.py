"""Known-answer tests of ``carnet.domain.merkle`` against every file of ``merkle-vectors/``.

``testdata/`` is transparency-dev/merkle's (inclusion, consistency, subtree inclusion, subtree
consistency: one JSON object per file); ``rgdd-CCTV/merkle/testdata/`` is the CCTV Merkle branch
(JSON arrays, tree heads included). Its README describes both formats.

Every vector is followed as written, including the four where the reference accepts roots that
are not 32 bytes long because the check never hashes them (two tree heads of the same size with
the same bytes, and an empty subtree, whose tree root plays no part).
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import pytest

from carnet.domain import merkle
from carnet.domain.errors import AuditChainError
from paths import EXTERNAL

# The tests marked ``external`` read the vectors in the corpus; the RFC 6962 roots need nothing.
VECTORS = EXTERNAL / "merkle-vectors"
TDEV = VECTORS / "testdata"
CCTV = VECTORS / "rgdd-CCTV" / "merkle" / "testdata"

#: The eight RFC 6962 test leaves behind every transparency-dev vector, and MTH of each prefix
#: (documented in the vectors' README, from certificate-transparency's merkle_tree_test.cc).
RFC6962_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
RFC6962_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
RFC6962_HASHES = [merkle.leaf_hash(bytes.fromhex(data)) for data in RFC6962_LEAVES]


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(vector: dict[str, Any], key: str = "proof") -> list[bytes]:
    return [_b64(h) for h in vector[key] or []]


def _tdev_files(kind: str) -> list[Path]:
    return sorted((TDEV / kind).rglob("*.json"))


def _tdev_id(path: Path) -> str:
    return path.relative_to(TDEV).as_posix()


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(path.read_text())
    return vector


def _expect(path: Path, check: Any) -> None:
    """Run ``check`` and compare the outcome with the vector's ``wantErr``, or Carnet's override."""
    want_error = _load(path)["wantErr"]
    if want_error:
        with pytest.raises(AuditChainError):
            check()
    else:
        check()


def _tdev_params(kind: str) -> Any:
    return pytest.mark.parametrize("path", _tdev_files(kind), ids=_tdev_id)


@pytest.mark.external
def test_every_vector_file_is_run() -> None:
    """The four transparency-dev folders hold the 518 files the README counts, all collected here."""
    counts = {kind: len(_tdev_files(kind)) for kind in ("inclusion", "consistency")}
    counts |= {kind: len(_tdev_files(kind)) for kind in ("subtreeinclusion", "subtreeconsistency")}
    assert counts == {"inclusion": 98, "consistency": 98, "subtreeinclusion": 204, "subtreeconsistency": 118}
    assert sorted(p.name for p in CCTV.glob("*.json")) == [
        "consistency-invalid.json",
        "consistency-valid.json",
        "inclusion-invalid.json",
        "inclusion-valid.json",
        "merkle_tree.json",
    ]


# --------------------------------------------------------------------------- transparency-dev


@pytest.mark.external
@_tdev_params("inclusion")
def test_inclusion(path: Path) -> None:
    """Each transparency-dev inclusion vector verifies, or raises, as it says."""
    v = _load(path)
    _expect(
        path,
        lambda: merkle.verify_inclusion(
            _b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v), _b64(v["root"])
        ),
    )


@pytest.mark.external
@_tdev_params("consistency")
def test_consistency(path: Path) -> None:
    """Each transparency-dev consistency vector verifies, or raises, as it says."""
    v = _load(path)
    _expect(
        path,
        lambda: merkle.verify_consistency(
            v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v)
        ),
    )


@pytest.mark.external
@_tdev_params("subtreeinclusion")
def test_subtree_inclusion(path: Path) -> None:
    """Each transparency-dev subtree inclusion vector verifies, or raises, as it says."""
    v = _load(path)
    _expect(
        path,
        lambda: merkle.verify_subtree_inclusion(
            _b64(v["leafHash"]), v["leafIdx"], v["start"], v["end"], _proof(v), _b64(v["root"])
        ),
    )


@pytest.mark.external
@_tdev_params("subtreeconsistency")
def test_subtree_consistency(path: Path) -> None:
    """Each transparency-dev subtree consistency vector verifies, or raises, as it says."""
    v = _load(path)
    _expect(
        path,
        lambda: merkle.verify_subtree_consistency(
            v["start"], v["end"], v["size"], _b64(v["root1"]), _b64(v["root2"]), _proof(v)
        ),
    )


def test_rfc6962_roots() -> None:
    """The eight RFC 6962 test leaves give the documented root for every prefix, from 0 to 8."""
    for size, root in enumerate(RFC6962_ROOTS):
        assert merkle.root_hash(RFC6962_HASHES[:size]).hex() == root


def _rfc_root(size: int) -> bytes:
    return bytes.fromhex(RFC6962_ROOTS[size]) if size < len(RFC6962_ROOTS) else b""


def _reproducible(kind: str) -> list[Path]:
    """The valid vectors of ``kind`` whose tree (or subtree) is made of the RFC 6962 leaves."""
    paths = []
    for path in _tdev_files(kind):
        v = _load(path)
        if v["wantErr"]:
            continue
        if "root" in v:  # inclusion: the (sub)tree is [start, end)
            width = v.get("end", v.get("treeSize", 0)) - v.get("start", 0)
            root = v["root"]
        else:  # consistency: the new tree is [0, size)
            width = v.get("size", v.get("size2", 0))
            root = v["root2"]
            if v.get("start", 0) == v.get("end", v.get("size1")):
                continue  # an empty range has nothing to prove
        if _b64(root) == _rfc_root(width):
            paths.append(path)
    return paths


INCLUSIONS = _reproducible("inclusion") + _reproducible("subtreeinclusion")
CONSISTENCIES = _reproducible("consistency") + _reproducible("subtreeconsistency")


@pytest.mark.external
def test_reproduced_proofs_cover_every_happy_path() -> None:
    """Every happy-path vector of the four folders is among the proofs reproduced below."""
    happy = {_tdev_id(p) for p in TDEV.rglob("happy-path*.json")}
    assert happy <= {_tdev_id(p) for p in INCLUSIONS + CONSISTENCIES}


@pytest.mark.external
@pytest.mark.parametrize("path", INCLUSIONS, ids=_tdev_id)
def test_inclusion_proofs_are_reproduced(path: Path) -> None:
    """Every valid inclusion proof over the RFC 6962 leaves is the one Carnet's prover writes."""
    v = _load(path)
    start = v.get("start", 0)
    # A (sub)tree made of the RFC 6962 leaves, placed from leaf ``start`` on.
    get_node = merkle.node_getter(lambda i: RFC6962_HASHES[i - start])
    if "start" in v:
        proof = merkle.prove_subtree_inclusion(get_node, v["leafIdx"], start, v["end"])
    else:
        proof = merkle.prove_inclusion(get_node, v["leafIdx"], v["treeSize"])
    assert proof == _proof(v)


@pytest.mark.external
@pytest.mark.parametrize("path", CONSISTENCIES, ids=_tdev_id)
def test_consistency_proofs_are_reproduced(path: Path) -> None:
    """Every valid consistency proof over the RFC 6962 leaves is the one Carnet's prover writes."""
    v = _load(path)
    get_node = merkle.node_getter(RFC6962_HASHES.__getitem__)
    if "start" in v:
        proof = merkle.prove_subtree_consistency(get_node, v["start"], v["end"], v["size"])
    else:
        proof = merkle.prove_consistency(get_node, v["size1"], v["size2"])
    assert proof == _proof(v)


# --------------------------------------------------------------------------- CCTV (rgdd)


def _cctv(name: str) -> list[dict[str, Any]]:
    if not (CCTV / name).exists():
        return []  # no corpus: the tests are deselected, not collected empty
    vectors: list[dict[str, Any]] = json.loads((CCTV / name).read_text())
    return vectors


def _cctv_params(name: str) -> Any:
    vectors = _cctv(name)
    return pytest.mark.parametrize("v", vectors, ids=[f"{name}[{i}]" for i in range(len(vectors))])


@pytest.mark.external
@pytest.mark.parametrize("size", range(1, len(_cctv("merkle_tree.json")) + 1))
def test_cctv_tree_heads(size: int) -> None:
    """Each CCTV leaf hashes to its leaf hash, and each prefix of leaves to its root (sizes 1 to 16)."""
    tree = _cctv("merkle_tree.json")
    v = tree[size - 1]
    assert merkle.leaf_hash(v["leaf_data"].encode()) == _b64(v["leaf_hash"])
    assert merkle.root_hash(merkle.leaf_hash(e["leaf_data"].encode()) for e in tree[:size]) == _b64(
        v["root_hash"]
    )


@pytest.mark.external
@_cctv_params("inclusion-valid.json")
def test_cctv_inclusion_valid(v: dict[str, Any]) -> None:
    """Each valid CCTV inclusion proof verifies."""
    merkle.verify_inclusion(
        _b64(v["leaf_hash"]),
        v["leaf_index"],
        v["tree_size"],
        _proof(v, "inclusion_path"),
        _b64(v["root_hash"]),
    )


@pytest.mark.external
@_cctv_params("inclusion-invalid.json")
def test_cctv_inclusion_invalid(v: dict[str, Any]) -> None:
    """Each invalid CCTV inclusion proof raises."""
    with pytest.raises(AuditChainError):
        merkle.verify_inclusion(
            _b64(v["leaf_hash"]),
            v["leaf_index"],
            v["tree_size"],
            _proof(v, "inclusion_path"),
            _b64(v["root_hash"]),
        )


@pytest.mark.external
@_cctv_params("consistency-valid.json")
def test_cctv_consistency_valid(v: dict[str, Any]) -> None:
    """Each valid CCTV consistency proof verifies, from the empty tree included."""
    merkle.verify_consistency(
        v["old_size"], v["new_size"], _b64(v["old_root"]), _b64(v["new_root"]), _proof(v, "consistency_path")
    )


@pytest.mark.external
@_cctv_params("consistency-invalid.json")
def test_cctv_consistency_invalid(v: dict[str, Any]) -> None:
    """Each invalid CCTV consistency proof raises."""
    with pytest.raises(AuditChainError):
        merkle.verify_consistency(
            v["old_size"],
            v["new_size"],
            _b64(v["old_root"]),
            _b64(v["new_root"]),
            _proof(v, "consistency_path"),
        )
