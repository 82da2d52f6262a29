"""Nothing of a record is readable at rest or in the logs (DESIGN §4).

Real data is stored (Synthea bundles, HL7 examples), then every file of the data directory
(database, WAL, shared memory, anything else), every database row, the key directory and the
captured logs are searched for plaintext taken from what was sent: names, identifiers, code
displays, LOINC codes, narrative text. Needles are at least 6 characters long, so a chance
match in ciphertext is negligible (≈ 4·10⁻⁹ per needle per megabyte of random bytes).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from starlette.testclient import TestClient

from carnet.api.app import Services
from carnet.domain.resources import R4_TYPES
from carnet.domain.search import PARAMETERS
from carnet.settings import Settings
from conftest import Mint
from records import (
    TEST_SYSTEM,
    load,
    post_example,
    storable_examples,
    store_synthea,
    synthea_bundles,
    walk_strings,
)

MIN_LENGTH = 6
#: Words that are not patient data and are stored in clear by design (resource types and search
#: parameter names) or appear in the schema. A one-word needle that contains one of them or is
#: part of one ("Report", "Ointment" in "Appointment", "Communications" in
#: "Communication" + "status" of adjacent columns) is dropped.
GENERIC = (
    {t.lower() for t in R4_TYPES}
    | {p.lower() for ps in PARAMETERS.values() for p in ps}
    | {
        "final",
        "active",
        "completed",
        "amended",
        "patient",
        "identifier",
        "category",
        "subject",
        "status",
        "generated",
        "unknown",
        "resource",
        "version",
        "sealed",
        "deleted",
        "created",
    }
)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
#: Files the local key provider and the development issuer keep in the key directory.
KEY_FILES = re.compile(r"^(kek-\d{6}\.key|current|dev-issuer\.pem)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What a test stored: the needles to look for, and the files and logs to look in."""

    needles: frozenset[str]
    resources: int


def _is_generic(needle: str) -> bool:
    word = needle.lower()
    if any(c.isspace() for c in word):
        return False
    return any(word in g or (len(g) >= 4 and g in word) for g in GENERIC)


def _narrative_fragments(div: str) -> Iterator[str]:
    for piece in _TAG.split(div):
        fragment = _SPACE.sub(" ", piece).strip()
        if len(fragment) >= 12:
            yield fragment[:40]


def needles_of(resource: Any) -> set[str]:
    """Collect plaintext worth looking for: names, identifiers, displays, LOINC codes, narrative."""
    found: set[str] = set()
    for key, value in walk_strings(resource):
        if key in ("family", "given", "display", "line", "city", "text") or (
            key == "value" and "@" not in value
        ):
            found.add(value)
        elif key == "div":
            found.update(_narrative_fragments(value))
    for node in _codings(resource):
        if node.get("system") == "http://loinc.org" and isinstance(node.get("code"), str):
            found.add(node["code"])
    return {
        n
        for n in (s.strip() for s in found)
        if len(n) >= MIN_LENGTH
        and not _is_generic(n)
        and not n.startswith(("http://", "https://", "urn:"))
        and not re.fullmatch(r"[\d\-:T.+Z ]+", n)  # dates and bare numbers are not telling
    } | {c for c in _loinc_codes(resource) if len(c) >= MIN_LENGTH}


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "system" in node and "code" in node:
            yield node
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _codings(item)


def _loinc_codes(resource: Any) -> Iterator[str]:
    for coding in _codings(resource):
        if coding.get("system") == "http://loinc.org" and isinstance(coding.get("code"), str):
            yield coding["code"]


def _base64_forms(raw: bytes) -> Iterator[bytes]:
    """The base64 text of ``raw`` at each of the three alignments it can have inside a larger value."""
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        whole = ((shift + len(raw)) // 3) * 4  # characters that depend on complete groups only
        skip = (0, 2, 3)[shift]  # characters that depend on the padding bytes
        yield encoded[skip:whole]


def forms(needles: Iterable[str]) -> dict[bytes, str]:
    """Map every byte form to look for to its needle: UTF-8, lower case; UTF-16 and base64 of some."""
    out: dict[bytes, str] = {}
    for needle in sorted(needles):
        out[needle.encode()] = needle
        out[needle.lower().encode()] = needle
    longest = sorted(needles, key=lambda n: (-len(n), n))[:40]
    for needle in longest:
        out[needle.encode("utf-16-le")] = needle
        out[needle.encode("utf-16-be")] = needle
        for encoded in _base64_forms(needle.encode()):
            if len(encoded) >= 8:
                out[encoded] = needle
    return out


def hits(blob: bytes, patterns: dict[bytes, str]) -> list[str]:
    """Return the needles found in ``blob``."""
    return sorted({needle for pattern, needle in patterns.items() if pattern in blob})


def store(client: TestClient, auth: Mint) -> Stored:
    """Store three Synthea bundles and a spread of HL7 examples; return what to look for."""
    bundles = sorted(synthea_bundles(), key=lambda p: p.stat().st_size)[:3]
    needles: set[str] = set()
    count = 0
    for path in bundles:
        stored = store_synthea(client, auth, path)
        count += len(stored.expected)
        for entry in load(path)["entry"]:
            needles |= needles_of(entry["resource"])
    examples = storable_examples()
    chosen = [p for i, p in enumerate(examples) if p.name.startswith("Patient-") or i % 4 == 0]
    taken: set[str] = set()
    for path in chosen:
        posted = post_example(client, auth, path, taken)
        count += posted.response.status_code == 201
        needles |= needles_of(posted.sent)
    # Search by identifier and family name: query strings must not reach the logs either.
    patient = next(
        e["resource"] for e in load(bundles[0])["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    ident = patient["identifier"][0]
    headers = auth(kind="patient", identifier=f"{ident['system']}|{ident['value']}")
    assert (
        client.get(
            f"/fhir/Patient?identifier={ident['system']}|{ident['value']}", headers=headers
        ).status_code
        == 200
    )
    assert (
        client.get(f"/fhir/Patient?family={patient['name'][0]['family']}", headers=headers).status_code == 400
    )
    return Stored(needles=frozenset(n for n in needles if TEST_SYSTEM not in n), resources=count)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _snapshot(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in _files(directory))


def _tables(services: Services) -> Iterator[tuple[str, int, bytes]]:
    """Yield ``(table, row count, bytes of every value of every row)`` for every table."""
    engine = services.store.engine
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608 (catalog names)
            values = [
                bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                for row in rows
                for v in row
                if v is not None
            ]
            yield table, len(rows), b"\x00".join(values)


@pytest.fixture
def baseline(settings: Settings, services: Services) -> bytes:
    """The data directory before anything is stored (schema, migrations' own text)."""
    return _snapshot(settings.data_dir)


def _searchable(needles: frozenset[str], baseline: bytes) -> dict[bytes, str]:
    kept = {n for n in needles if n.encode() not in baseline and n.lower().encode() not in baseline}
    assert len(kept) > 300, f"only {len(kept)} needles: the sample is too small to prove anything"
    return forms(kept)


def test_nothing_readable_at_rest(
    client: TestClient, auth: Mint, settings: Settings, services: Services, baseline: bytes
) -> None:
    """No name, identifier, display, code or narrative is in any data file, database row or key file."""
    stored = store(client, auth)
    assert stored.resources > 300
    patterns = _searchable(stored.needles, baseline)
    sqlite = settings.database_url.startswith("sqlite")
    files = _files(settings.data_dir)
    if sqlite:
        names = {p.name for p in files}
        assert {"carnet.sqlite3", "carnet.sqlite3-wal", "carnet.sqlite3-shm"} <= names
    found = {str(p.relative_to(settings.data_dir)): hits(p.read_bytes(), patterns) for p in files}
    assert {name: h for name, h in found.items() if h} == {}
    rows: dict[str, int] = {}
    for table, count, blob in _tables(services):
        rows[table] = count
        assert hits(blob, patterns) == [], table
    assert rows["resource_versions"] >= stored.resources
    keys = _files(settings.key_dir)
    assert [p.name for p in keys if not KEY_FILES.match(p.name)] == []
    assert {p.name: hits(p.read_bytes(), patterns) for p in keys if hits(p.read_bytes(), patterns)} == {}
    if sqlite:
        # Closing the last connection checkpoints the WAL into the database file: look again.
        services.store.engine.dispose()
        assert {p.name: hits(p.read_bytes(), patterns) for p in _files(settings.data_dir)} == {
            p.name: [] for p in _files(settings.data_dir)
        }


def test_nothing_readable_in_logs(
    client: TestClient,
    auth: Mint,
    baseline: bytes,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The logs of storing, refusing and searching real data name no patient data."""
    caplog.set_level(logging.DEBUG)
    stored = store(client, auth)
    patterns = _searchable(stored.needles, baseline)
    assert any(r.name.startswith("carnet") for r in caplog.records), "the access log was not captured"
    logged = "\n".join(
        [caplog.text, *(str(r.args) for r in caplog.records), *(str(r.exc_info) for r in caplog.records)]
    )
    output = capfd.readouterr()
    assert hits((logged + output.out + output.err).encode(), patterns) == []
