"""The serving process's collector settings (carnet.heap)."""

from __future__ import annotations

import gc
import subprocess
import sys


def test_settle_freezes_the_application_and_collects_the_young_less_often() -> None:
    # In a process of its own: the freeze and the thresholds are process-wide.
    script = (
        "import gc; import carnet.api.app; from carnet.heap import settle, YOUNG; settle(); "
        "print(gc.get_freeze_count() > 10_000, gc.get_threshold()[0] == YOUNG, gc.isenabled())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]
    assert gc.get_threshold()[0] != 0  # this process untouched
