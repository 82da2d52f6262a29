"""Sample a real ``carnet serve`` (one worker) with py-spy under a wrk load; write a text summary.

    .venv/bin/python bench/profile.py read     # GET /fhir/Observation/{id}, 4 connections
    .venv/bin/python bench/profile.py create   # POST /fhir/Observation

The summary (``bench/profiles/<what>.txt``) lists the functions holding the most samples,
inclusive (on the stack) and exclusive (running), as shares of all samples of the worker. py-spy
(``pip install py-spy``) must be allowed to read the server's memory (root, or ptrace allowed).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import load
from run import backend, fhirjson, heart_rate, log, open_record, server

HERE = Path(__file__).resolve().parent


def summarise(collapsed: Path, top: int) -> str:
    """Inclusive and exclusive shares per function of py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")"
            for f in stack.split(";")[1:]
            if " (" in f
        ]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            exclusive[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive (on the stack):"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "exclusive (running):"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in exclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def sample(pid: int, out: Path, *, gil: bool = False, seconds: int | None = None) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` (200 samples/s, raw collapsed stacks into ``out``) once it is attached.

    With ``seconds`` it samples that long without pausing the process (``--nonblocking``) and then
    stops by itself; without, it samples until it gets SIGINT. ``gil``: only samples holding the GIL.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    timing = ["--duration", str(seconds), "--nonblocking"] if seconds is not None else []
    sampler = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", "200"]
        + timing
        + (["--gil"] if gil else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # py-spy attaches before the load starts
    return sampler


def main() -> None:
    """Seed a record, load the server, sample it, write the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["read", "create"])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tag", default="", help="appended to the summary's file name (e.g. -before)")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (CPU in Python)")
    parser.add_argument("--stacks", type=Path, help="also keep py-spy's raw collapsed stacks in this file")
    args = parser.parse_args()
    with backend(args.backend) as settings, server(settings, workers=1) as (client, pid):
        patient_id, headers = open_record(client, settings, "1850575000011")
        observation = heart_rate(patient_id)
        observation_id = client.post("/fhir/Observation", json=observation, headers=headers).json()["id"]
        base = str(client.base_url).rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "stacks.txt"
            sampler = sample(pid, out, gil=args.gil, seconds=args.seconds + 1)
            if args.what == "read":
                result = load.wrk(
                    f"{base}/fhir/Observation/{observation_id}",
                    headers={"Authorization": headers["Authorization"]},
                    seconds=args.seconds,
                    connections=args.connections,
                    server_pid=pid,
                )
            else:
                result = load.wrk(
                    f"{base}/fhir/Observation",
                    headers=headers,
                    seconds=args.seconds,
                    connections=args.connections,
                    server_pid=pid,
                    method="POST",
                    body=fhirjson.dumps(observation),
                )
            sampler.wait(timeout=60)
            if args.stacks is not None:
                shutil.copyfile(out, args.stacks)
            text = (
                f"py-spy{' --gil' if args.gil else ''} of one `carnet serve` worker ({args.backend}) under wrk: {args.what}, "
                f"{args.connections} connections, {args.seconds} s; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
                f"{result.describe()}\n\n" + summarise(out, 45)
            )
    target = HERE / "profiles" / f"{args.what}-{args.backend}{'-gil' if args.gil else ''}{args.tag}.txt"
    target.write_text(text)
    log(f"wrote {target}")
    print(text)


if __name__ == "__main__":
    main()
