"""The type of the ``auth`` fixture: mint development-token headers from claims.

Test modules import it from here, never from ``conftest``: ``tests/browser/conftest.py`` is a
module named ``conftest`` too, and which one ``import conftest`` finds depends on collection order.
"""

from __future__ import annotations

from collections.abc import Callable

Mint = Callable[..., dict[str, str]]
