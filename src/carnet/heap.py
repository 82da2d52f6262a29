"""The garbage collector of a serving process, set once the application is built.

Python's cyclic collector runs after every 700 new container objects by default. A transaction
Bundle parses into tens of thousands of dicts and lists, so a worker ran it hundreds of times
per Bundle, each time walking the application's own long-lived objects too (~20 % of the CPU of
a Synthea ingest, 0.14 ms per resource). :func:`settle` moves what exists at start-up out of the
collector's sight (``gc.freeze``: modules, models, the application) and lets the young
generation grow larger before a collection. Reference counting still frees everything that is
not in a cycle at once; cycles are collected, later.
"""

from __future__ import annotations

import gc

#: New container objects between two collections of the youngest generation (default 700).
YOUNG = 20_000


def settle() -> None:
    """Collect once, freeze what survives (the application), and collect less often from now on."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
