"""Load generation and server accounting for the benchmarks: ``wrk`` runs, CPU time, RSS of workers.

``wrk`` (Debian package ``wrk``: ``apt-get install wrk``) is a compiled load generator: one thread
of it drives thousands of requests per second for a few percent of a core, so the server keeps
the machine's cores. Its own CPU share is measured and printed beside each figure.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WrkResult:
    """What one ``wrk`` run measured, with the server's and the client's CPU over it."""

    requests_per_second: float
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_ms_per_request: float
    client_cpu_share: float

    def describe(self) -> str:
        """One line for the tables."""
        return (
            f"{self.requests_per_second:,.0f} requests/s (p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms; "
            f"server CPU {self.server_cpu_ms_per_request:.2f} ms/request; wrk {self.client_cpu_share:.0%} of "
            f"the cores)"
        )


def wrk_path() -> str:
    """The ``wrk`` executable.

    Raises:
        SystemExit: it is not installed (with how to install it).
    """
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("the benchmarks need wrk: `apt-get install wrk` (Debian) or `brew install wrk`")
    return found


def worker_pids(pid: int) -> list[int]:
    """The process ``pid`` and all its descendants (uvicorn's workers and their spawn helpers)."""
    found = [pid]
    index = 0
    while index < len(found):
        children = Path(f"/proc/{found[index]}/task/{found[index]}/children")
        with contextlib.suppress(OSError):
            found.extend(int(c) for c in children.read_text().split())
        index += 1
    return found


def backend_pids(database_url: str | None) -> list[int]:
    """The PostgreSQL backends serving a bench store (its URL's ``application_name``); none on SQLite.

    Their CPU (:func:`cpu_seconds`, the server on this machine) is the database's share of the
    two cores: a statement saved is CPU saved there too.
    """
    if not database_url or not database_url.startswith("postgresql"):
        return []
    url = make_url(database_url)
    name = url.query.get("application_name")
    if not name:
        return []
    engine = create_engine(url.set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            ).all()
    finally:
        engine.dispose()
    return [int(r[0]) for r in rows]


class BackendCPU:
    """The CPU seconds of a bench store's PostgreSQL backends over a run (0 on SQLite).

    Backends connected during the run count whole; one that ended during it is missed.
    """

    def __init__(self, database_url: str | None) -> None:
        self.url = database_url
        self.before = {pid: cpu_seconds([pid]) for pid in backend_pids(database_url)}

    def used(self) -> float:
        """CPU seconds used since this was made."""
        return sum(cpu_seconds([pid]) - self.before.get(pid, 0.0) for pid in backend_pids(self.url))


def _tcp_inodes(port: int, state: str) -> list[str]:
    """The socket inodes on a local TCP port in one state (``/proc/net/tcp``: ``0A`` listen, ``01`` established)."""
    inodes: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.append(fields[9])
    return inodes


def listeners(port: int) -> int:
    """How many sockets listen on a local TCP port (one per worker with SO_REUSEPORT)."""
    return len(_tcp_inodes(port, "0A"))


def connections_of(pids: list[int], port: int) -> list[int]:
    """How many established connections to a local TCP port each process holds now (``/proc``)."""
    inodes = set(_tcp_inodes(port, "01"))
    counts = []
    for pid in pids:
        held = 0
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    held += target.startswith("socket:[") and target[8:-1] in inodes
        counts.append(held)
    return counts


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (from ``/proc``)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def rss_mb(pids: list[int]) -> dict[int, tuple[float, float]]:
    """Current and peak resident set size (MB) of each process: ``{pid: (VmRSS, VmHWM)}``.

    multiprocessing's resource tracker (a helper of uvicorn's workers, ~12 MB) is left out.
    """
    out: dict[int, tuple[float, float]] = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
        except OSError:
            continue
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
        if values:
            out[pid] = (int(values.get("VmRSS", 0)) / 1024, int(values.get("VmHWM", 0)) / 1024)
    return out


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    headers: dict[str, str],
    seconds: int,
    connections: int,
    server_pid: int,
    method: str = "GET",
    body: bytes | None = None,
    threads: int = 1,
    timeout: int = 2,
) -> WrkResult:
    """Drive ``url`` with ``wrk`` and return what it measured.

    Raises:
        SystemExit: any answer was not 2xx (the figure would be meaningless).
    """
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "request.lua"
        lines = [f'wrk.method = "{method}"']
        if body is not None:
            (Path(tmp) / "body").write_bytes(body)
            lines.append(
                f'local f = io.open("{Path(tmp) / "body"}", "rb"); wrk.body = f:read("*a"); f:close()'
            )
        script.write_text("\n".join(lines) + "\n")
        command = [wrk_path(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
        command += ["--timeout", f"{timeout}s"]  # wrk's own default: an answer slower than 2 s is an error
        command += ["-s", str(script)]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        pids = worker_pids(server_pid)
        before_server = cpu_seconds(pids)
        before_client = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
        elapsed = time.perf_counter() - started
        after_client = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = cpu_seconds(pids) - before_server
    client_cpu = (after_client.ru_utime + after_client.ru_stime) - (
        before_client.ru_utime + before_client.ru_stime
    )
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    if errors:
        raise SystemExit(f"wrk {method} {url}: {errors} failed answers\n{output}")
    latency = dict(re.findall(r"^\s+(50|99)\.?0*%\s+(\S+)", output, re.MULTILINE))
    if "50" not in latency or "99" not in latency:
        raise SystemExit(f"wrk printed no latency distribution:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return WrkResult(
        requests_per_second=rate,
        requests=requests,
        seconds=seconds,
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        errors=errors,
        server_cpu_ms_per_request=1000 * server_cpu / max(1, requests),
        client_cpu_share=client_cpu / (elapsed * (os.cpu_count() or 1)),
    )


class AnswerError(Exception):
    """A request of :func:`post_all` was not answered 200 (its status and the start of its body)."""


def _receive_until(sock: socket.socket, pending: bytearray, enough: Callable[[bytearray], bool]) -> None:
    """Receive from ``sock`` into ``pending`` until ``enough(pending)``.

    Raises:
        AnswerError: the server closed the connection first.
    """
    while not enough(pending):
        chunk = sock.recv(65536)
        if not chunk:
            raise AnswerError("the server closed the connection")
        pending += chunk


def _read_answer(sock: socket.socket, pending: bytearray) -> tuple[int, bytes]:
    """Read one HTTP/1.1 answer from ``sock`` (``pending``: bytes already received); return status and body."""
    _receive_until(sock, pending, lambda got: b"\r\n\r\n" in got)
    end = pending.index(b"\r\n\r\n")
    head = bytes(pending[:end]).decode("latin-1").split("\r\n")
    del pending[: end + 4]
    status = int(head[0].split(" ", 2)[1])
    fields = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])
    }
    if "content-length" in fields:
        length = int(fields["content-length"])
        _receive_until(sock, pending, lambda got: len(got) >= length)
        body = bytes(pending[:length])
        del pending[:length]
        return status, body
    if fields.get("transfer-encoding", "").lower() != "chunked":
        raise AnswerError(f"an answer with neither Content-Length nor chunks: {head[:1]}")
    body_parts: list[bytes] = []
    while True:
        _receive_until(sock, pending, lambda got: b"\r\n" in got)
        line_end = pending.index(b"\r\n")
        size = int(bytes(pending[:line_end]).split(b";", 1)[0], 16)
        chunk_end = line_end + 2 + size
        _receive_until(sock, pending, lambda got, end=chunk_end + 2: len(got) >= end)
        body_parts.append(bytes(pending[line_end + 2 : chunk_end]))
        del pending[: chunk_end + 2]
        if size == 0:
            return status, b"".join(body_parts)


def post_all(url: str, requests: list[tuple[dict[str, str], bytes]], clients: int) -> float:
    """POST each ``(headers, body)`` to ``url`` from ``clients`` keep-alive connections; return the seconds.

    A lean client for the benches whose requests are large (transaction Bundles, ITI-65): every
    request is encoded before the clock starts, and each connection only sends those bytes and
    reads its answer's status line, headers and body off a plain socket (no HTTP library: httpx
    spent ~4 ms of CPU per ~140 KB ITI-65 request, 38 % of the two cores with 8 clients, 2026-12-07).
    Connection *i* sends requests *i*, *i* + ``clients``, … in turn.

    Raises:
        AnswerError: an answer was not 200 (every client stops).
    """
    split = urllib.parse.urlsplit(url)
    host, port, path = split.hostname or "127.0.0.1", split.port or 80, split.path or "/"
    encoded: list[bytes] = []
    for headers, body in requests:
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        encoded.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    failures: list[BaseException] = []

    def send(chunk: list[bytes]) -> None:
        pending = bytearray()
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for request in chunk:
                if failures:
                    return
                sock.sendall(request)
                status, body = _read_answer(sock, pending)
                if status != 200:
                    raise AnswerError(f"{status} {body[:300]!r}")

    def guarded(chunk: list[bytes]) -> None:
        try:
            send(chunk)
        except BaseException as failure:  # the others stop at their next request
            failures.append(failure)

    threads = [threading.Thread(target=guarded, args=(encoded[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return elapsed
