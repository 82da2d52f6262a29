"""A real ``carnet serve`` for the tests that talk to it over HTTP: a free port, waiting until it answers.

Two ways to start one: :func:`popen_serve` runs ``python -m carnet serve`` (the whole command, as an
operator would); :class:`ForkedServer` forks the same command function from a process that has
already imported Carnet (multiprocessing's ``forkserver``), so a test can start and ``kill -9`` it
hundreds of times without paying for the imports each time.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

STARTUP_SECONDS = 60
#: Modules the fork server imports once, before it forks any server: the command, the app, and
#: what building the app and a first write import lazily (the portals, the FHIR models the kill
#: test writes). A name that no longer exists is skipped.
#: ``__main__`` (pytest's script) is imported there too, or each fork would import it again.
PRELOAD = [
    "__main__",
    "carnet.cli",
    "carnet.api.app",
    "carnet.audit.verify",
    "carnet.web.login",
    "carnet.web.patient",
    "carnet.web.pro",
    "carnet.web.summary_pdf",
    "fhir.resources.R4B.observation",
    "fhir.resources.R4B.patient",
    "uvicorn",
    "served",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def is_up(url: str) -> bool:
    """Tell whether ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local http URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def is_listening(port: int) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:``port`` now.

    uvicorn binds its socket only once the app's startup has completed, so this means "ready".
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def serve_env(root: Path, port: int, database_url: str = "") -> dict[str, str]:
    """The environment of a server on ``port`` with its data and keys under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    env.update(
        CARNET_DATA_DIR=str(root / "data"),
        CARNET_KEY_DIR=str(root / "keys"),
        CARNET_HOST="127.0.0.1",
        CARNET_PORT=str(port),
        CARNET_BASE_URL=f"http://127.0.0.1:{port}/fhir",
    )
    if database_url:
        env["CARNET_DATABASE_URL"] = database_url
    return env


def popen_serve(env: Mapping[str, str], log: Path, *options: str) -> subprocess.Popen[bytes]:
    """Start ``python -m carnet serve [options]`` with ``env``, its output going to ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "carnet", "serve", *options],
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Wait until ``url`` answers 200; fail the test if the server exits or takes over a minute."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"carnet serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if is_up(url):
            return
        time.sleep(0.2)
    pytest.fail(f"carnet serve did not answer {url} within {STARTUP_SECONDS}s:\n{log.read_text()[-3000:]}")


def _exit_when_gone(owner: int) -> None:
    """Exit this process once ``owner`` (the test process) is gone: no server outlives its test."""
    while True:
        time.sleep(1)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(1)


def _serve_forked(env: dict[str, str], log: str, owner: int) -> None:
    """Run the ``carnet serve`` command function in this (forked) process, with ``env`` as environment."""
    from carnet.cli import serve

    threading.Thread(target=_exit_when_gone, args=(owner,), daemon=True).start()

    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.environ.clear()
    os.environ.update(env)
    serve(workers=1)


class ForkedServer:
    """``carnet serve`` in a process forked from a server that already imported Carnet."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        """Prepare a server with ``env`` (see :func:`serve_env`), writing its output to ``log``."""
        self.env = dict(env)
        self.log = log
        self.url = f"http://127.0.0.1:{env['CARNET_PORT']}/fhir"
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        self._context = context
        self._process: BaseProcess | None = None

    def start(self) -> None:
        """Start the server and wait until it answers (fail the test after a minute)."""
        process = self._context.Process(
            target=_serve_forked, args=(self.env, str(self.log), os.getpid()), daemon=True
        )
        process.start()
        self._process = process
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if not process.is_alive():
                output = self.log.read_text()[-3000:] if self.log.exists() else "(no output)"
                pytest.fail(f"carnet serve exited with {process.exitcode}:\n{output}")
            if is_listening(int(self.env["CARNET_PORT"])):
                return
            time.sleep(0.02)
        pytest.fail(f"carnet serve did not answer within {STARTUP_SECONDS}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """Send SIGKILL (``kill -9``) and reap the process."""
        process = self._process
        if process is None or process.pid is None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=30)
        self._process = None

    def stop(self) -> None:
        """Stop the server if it runs (SIGTERM, then SIGKILL after ten seconds)."""
        process = self._process
        if process is None:
            return
        process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            self.kill()
        self._process = None
