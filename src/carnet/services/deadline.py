"""The time budget of the request being served (``CARNET_REQUEST_SECONDS``).

The HTTP layer opens a budget for each API request (:func:`within`); long loops — reading a
body, the entries of a Bundle — call :func:`check` between steps, which raises
:class:`~carnet.domain.errors.DeadlineExceeded` once the budget is spent. Raised inside a
transaction, it rolls the whole transaction back: a request over its budget changes nothing.
Work that comes from no request (the command line, tests calling services) has no budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from carnet.domain.errors import DeadlineExceeded

_DEADLINE: ContextVar[tuple[float, float, Callable[[], float]] | None] = ContextVar(
    "carnet_deadline", default=None
)


@contextmanager
def within(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Give the work inside the block ``seconds`` to finish (see :func:`check`)."""
    token = _DEADLINE.set((clock() + seconds, seconds, clock))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check() -> None:
    """Stop the current request if its time budget is spent.

    Raises:
        DeadlineExceeded: the budget opened by :func:`within` has run out.
    """
    current = _DEADLINE.get()
    if current is not None and current[2]() > current[0]:
        raise DeadlineExceeded(
            f"The request took longer than {current[1]:g} s (CARNET_REQUEST_SECONDS) and was stopped; "
            "nothing it was writing was kept. Send less at a time."
        )
