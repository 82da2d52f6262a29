"""Where the tests find data that is not part of the repository.

``shared/`` lies beside the clone, both here and in CI (which clones into another folder and copies
``shared/`` next to it), so it is always ``<repo>/../shared``.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "data" / "external"
