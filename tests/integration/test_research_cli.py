"""`carnet research`: register, approve, export to NDJSON files, ask a DP count, read the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from carnet.settings import Settings
from minting import Mint
from research_population import load, registration


def _carnet(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("CARNET_") or k.startswith("CARNET_TEST_")
    }
    env = {
        **clean,
        "CARNET_DATA_DIR": str(settings.data_dir),
        "CARNET_KEY_DIR": str(settings.key_dir),
        "CARNET_DATABASE_URL": str(settings.database_url),
    }
    return subprocess.run(
        [sys.executable, "-m", "carnet", "research", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_research_commands_end_to_end(
    client: TestClient, auth: Mint, settings: Settings, tmp_path: Path
) -> None:
    """A study is registered, refused before approval, approved, exported to files and asked a count."""
    load(client, auth, 6, choose=False)
    study = tmp_path / "study.json"
    study.write_text(json.dumps(registration(privacy={"k": 2, "epsilon": 0.5, "maxSuppression": 0.0})))
    assert _carnet(settings, "register", "s1", str(study)).returncode == 0
    early = _carnet(settings, "export", "s1", "--out", str(tmp_path / "early"))
    assert (early.returncode, "approve" in early.stderr) == (1, True)
    assert _carnet(settings, "approve", "s1").returncode == 0
    done = _carnet(
        settings, "export", "s1", "--out", str(tmp_path / "out"), "--type", "Condition,Observation"
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    patients = [f for f in manifest["output"] if f["type"] == "Patient"]
    assert sum(f["count"] for f in patients) == manifest["summary"]["patients"] == 6
    lines = (tmp_path / "out" / patients[0]["url"]).read_text().splitlines()
    assert all('"identifier"' not in line and '"birthDate"' not in line for line in lines)
    asked = _carnet(settings, "ask", "s1", "--epsilon", "0.4")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith("count\t")
    refused = _carnet(settings, "ask", "s1", "--epsilon", "0.4")
    assert refused.returncode == 1
    ledger = _carnet(settings, "ledger", "s1")
    assert "0.4" in ledger.stdout
