"""The cost of erasure shares (crypto/shares.py): a lookup per record key unwrapped, an fsync per
record created or shredded, at 10⁵–10⁶ records. Usage::

    .venv/bin/python bench/shares.py               # 10⁶ records (≈ 48 MB in a temporary directory)
    .venv/bin/python bench/shares.py --records 100000
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from carnet.crypto.local_provider import LocalKeyProvider
from carnet.crypto.shares import ShareLedger


def _fill(directory: Path, records: int) -> list[bytes]:
    """Write the shard files of ``records`` shares directly (no fsync each), as a grown ledger."""
    shards: dict[str, bytearray] = {}
    ids = []
    for _ in range(records):
        share_id = os.urandom(16)
        ids.append(share_id)
        shards.setdefault(share_id.hex()[:3], bytearray()).extend(share_id + os.urandom(32))
    directory.mkdir(mode=0o700)
    for name, data in shards.items():
        (directory / f"{name}.shares").write_bytes(data)
    return ids


def main() -> None:
    """Print one Markdown table of the measured costs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = _fill(root / "shares", args.records)
        ledger = ShareLedger(root / "shares")
        sample = random.sample(ids, min(args.lookups, len(ids)))
        start = time.perf_counter()
        for share_id in sample:
            ledger.get(share_id)
        lookup = (time.perf_counter() - start) / len(sample)
        start = time.perf_counter()
        for _ in range(200):
            ledger.new()
        create = (time.perf_counter() - start) / 200
        start = time.perf_counter()
        for share_id in sample[:200]:
            ledger.destroy(share_id)
        destroy = (time.perf_counter() - start) / 200
        keys = LocalKeyProvider(root / "keys")
        wrapped = keys.wrap(os.urandom(32))
        start = time.perf_counter()
        for _ in range(args.lookups):
            keys.unwrap(wrapped)
        unwrap = (time.perf_counter() - start) / args.lookups
        size = sum(p.stat().st_size for p in (root / "shares").glob("*.shares"))
    print(f"| erasure shares, {args.records:,} records | |")
    print("|---|---|")
    print(f"| share lookup (page cache warm) | {lookup * 1e6:.0f} µs |")
    print(f"| local KEK unwrap (for comparison) | {unwrap * 1e6:.1f} µs |")
    print(f"| share created (append + fsync) | {create * 1e3:.2f} ms |")
    print(f"| share destroyed (overwrite + fsync) | {destroy * 1e3:.2f} ms |")
    print(f"| ledger size | {size / 1e6:.0f} MB |")


if __name__ == "__main__":
    main()
