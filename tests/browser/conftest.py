"""Browser tests: Playwright drives Debian's Chromium against the real server in a subprocess.

The session starts, once per test worker:

- an SMTP sink (aiosmtpd) on a free port, collecting the notices the server sends;
- ``carnet serve`` on a free port with its own data and key directories, seeded first with a
  few synthetic patients through the normal record service (as ``carnet demo`` does), and
  ``carnet worker`` delivering the notification outbox to the SMTP sink;
- Chromium from ``/usr/bin/chromium`` (Debian's package; ``playwright install`` is never used).

Nothing here skips: a missing Chromium or a missing axe-core fails with the command that fixes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from browser.browsing import LiveServer, open_context
from carnet.api.app import build_services
from carnet.demo import seed_population
from carnet.domain.feeds import FeedKind
from carnet.settings import Settings
from carnet.web.identities import demo_professionals
from smtp_sink import Mailbox, free_port

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("CARNET_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
STARTUP_SECONDS = 60
SEED = 2026
PATIENTS = 7


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    """An SMTP sink on a free loopback port (aiosmtpd cannot pick port 0 itself)."""
    box = Mailbox(free_port())
    box.start()
    try:
        yield box
    finally:
        box.stop()


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"carnet serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local http URL)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    pytest.fail(f"carnet serve did not answer {url} within {STARTUP_SECONDS}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[LiveServer]:
    """``carnet serve`` on a free port over a freshly seeded store, with notices going to ``mailbox``."""
    root = tmp_path_factory.mktemp("live")
    data_dir, key_dir = root / "data", root / "keys"
    services = build_services(Settings(data_dir=data_dir, key_dir=key_dir))
    try:
        seeded = seed_population(services.records, patients=PATIENTS, seed=SEED)
        professionals = demo_professionals(services.records)
        # A registered lab feed, so the patient's feeds page shows its choice form.
        services.feeds.add(
            "demo-lab", name="Laboratoire de démonstration", kind=FeedKind.HL7V2, classes=frozenset({"10"})
        )
    finally:
        services.store.engine.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    env.update(
        CARNET_DATA_DIR=str(data_dir),
        CARNET_KEY_DIR=str(key_dir),
        CARNET_HOST="127.0.0.1",
        CARNET_PORT=str(port),
        CARNET_BASE_URL=f"{url}/fhir",
        CARNET_SMTP_HOST="127.0.0.1",
        CARNET_SMTP_PORT=str(mailbox.port),
        CARNET_WORKER_SECONDS="1",
        CARNET_LOGIN_RATE_PER_MINUTE="100000",
        CARNET_API_RATE_PER_MINUTE="6000000",
        CARNET_API_BURST="100000",
    )
    log = root / "server.log"
    worker_log = root / "worker.log"
    with log.open("wb") as output, worker_log.open("wb") as worker_output:
        process = subprocess.Popen(
            [sys.executable, "-m", "carnet", "serve"], env=env, stdout=output, stderr=subprocess.STDOUT
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "carnet", "worker"],
            env=env,
            stdout=worker_output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(process, f"{url}/fhir/metadata", log)
        yield LiveServer(
            url=url,
            data_dir=data_dir,
            key_dir=key_dir,
            log=log,
            worker_log=worker_log,
            patients=tuple(seeded),
            professionals=tuple(professionals),
            mailbox=mailbox,
        )
    finally:
        for child in (worker, process):
            child.terminate()
        for child in (worker, process):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """The Playwright driver (its Node process), for the whole session."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; fails with the fix when it is not installed."""
    if not CHROMIUM.is_file():
        found = shutil.which("chromium")
        pytest.fail(
            f"The browser tests need Debian's Chromium at {CHROMIUM}"
            + (f" (one was found at {found}: set CARNET_TEST_CHROMIUM)" if found else "")
            + "; install it with `apt-get install chromium` (.ci/run does)."
        )
    launched = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the live server."""
    made = open_context(browser, live_server.url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def new_context(browser: Browser, live_server: LiveServer) -> Iterator[Callable[[], BrowserContext]]:
    """Open more browser profiles (one person's cookies each); all are closed after the test."""
    made: list[BrowserContext] = []

    def open_one() -> BrowserContext:
        made.append(open_context(browser, live_server.url))
        return made[-1]

    try:
        yield open_one
    finally:
        for profile in made:
            profile.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page in a fresh browser profile."""
    return context.new_page()
