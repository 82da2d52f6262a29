"""The one way the HTTP adapters run blocking work: ``await offload(fn, *args)``.

The rule for the whole application (API and portals): a route handler is either a plain
``def`` (Starlette runs it in its worker threads) or an ``async def`` whose every blocking call
— the database above all, through the record services, the session store, the demo
identities; but also parsing a large document or drawing a PDF — goes through
:func:`offload`. Nothing blocking runs on the event loop's thread, where it would stall every
other request. ``tests/integration/test_event_loop.py`` drives every route with a database
hook that records any statement executed on a thread running an event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["offload"]


async def offload(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in a worker thread and return its result (or raise its error)."""
    return await run_in_threadpool(fn, *args, **kwargs)
