"""Run a coroutine to its end from a synchronous test, whatever loop the worker's thread holds.

The browser tests' Playwright (sync API) keeps an event loop running in the pytest worker's main
thread for the whole session; with ``--dist loadfile`` a feed test may land on that worker after
them, and ``asyncio.run`` refuses to start there ("cannot be called from a running event loop").
A thread of its own has no loop, so the coroutine runs there and its result (or error) comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_to_end(coroutine: Coroutine[Any, Any, T], *, timeout: float = 120) -> T:
    """``asyncio.run(coroutine)`` in a fresh thread; its exception, if any, is raised here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-asyncio") as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=timeout)
