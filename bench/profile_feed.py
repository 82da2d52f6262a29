"""Profile the HL7 v2 intake of ~100 KB CDA messages in-process (one thread, cProfile); text summary.

    .venv/bin/python bench/profile_feed.py                   # 200 messages, SQLite
    .venv/bin/python bench/profile_feed.py --tag -after      # written to bench/profiles/feed-sqlite-after.txt

The messages are those of ``bench/feeds.py`` (distinct ~100 KB CDA level 1 documents for 50 open
records, a registered lab feed); each is taken by ``HL7v2Intake.receive`` as the MLLP listener
does, sealing, policy and journal on. Prints the CPU time per message (``process_time``, which
the other sessions' load inflates less than wall clock) and the functions holding the most of it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from feeds import _messages, open_lab
from run import backend, log

from carnet.api.app import build_services

HERE = Path(__file__).resolve().parent


def _standard(name: str) -> ModuleType:
    """Import a standard module that bench/profile.py shadows (cProfile imports ``profile``)."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


def main() -> None:
    """Seed the records, take the messages under cProfile, write the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tag", default="")
    parser.add_argument("--stats", type=Path, help="also write cProfile's raw statistics here")
    args = parser.parse_args()
    with backend(args.backend) as settings:
        services = build_services(settings)
        open_lab(services, 50)
        messages = _messages(2 * args.messages + 20, 50, 100_000)
        for message in messages[:20]:  # warm up (imports, caches)
            services.hl7v2.receive("bench-lab", message)
        # First without the profiler: the CPU time per message as served (process_time, which the
        # other sessions' load inflates less than wall time), then the same number under cProfile.
        plain = messages[20 : 20 + args.messages]
        cpu, wall = time.process_time(), time.perf_counter()
        for message in plain:
            assert services.hl7v2.receive("bench-lab", message).outcome == "stored"
        plain_cpu, plain_wall = time.process_time() - cpu, time.perf_counter() - wall
        # Wall clock: a process_time timer costs a system call per event (4x the run) and skews the
        # shares towards the many small calls; the CPU per message is the line above.
        profiler = _standard("cProfile").Profile()
        cpu, wall = time.process_time(), time.perf_counter()
        profiler.enable()
        for message in messages[20 + args.messages :]:
            receipt = services.hl7v2.receive("bench-lab", message)
            assert receipt.outcome == "stored", receipt.ack
        profiler.disable()
        if args.stats:
            profiler.dump_stats(args.stats)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        services.store.engine.dispose()
    out = io.StringIO()
    stats = _standard("pstats").Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)
    body = "\n".join(
        line for line in out.getvalue().splitlines() if line.strip() and not line.startswith("   Ordered")
    )
    text = (
        f"cProfile of HL7v2Intake.receive, {args.messages} ORU^R01 of ~100 KB CDA, one thread, "
        f"{args.backend}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
        f"without the profiler: CPU {1000 * plain_cpu / args.messages:.1f} ms per message, "
        f"wall {1000 * plain_wall / args.messages:.1f} ms\n"
        f"under cProfile (times below are wall clock, inflated by the load): CPU {1000 * cpu / args.messages:.1f} ms "
        f"per message, wall {1000 * wall / args.messages:.1f} ms\n\n{body}\n"
    )
    target = HERE / "profiles" / f"feed-{args.backend}{args.tag}.txt"
    target.write_text(text)
    log(f"wrote {target}")
    print(text[:6000])


if __name__ == "__main__":
    main()
