"""Nothing of a record is readable at rest or in the logs (DESIGN §4).

Realistic data is stored (the generated population of ``carnet.synthetic``, and, when the external
corpus is there, Synthea bundles and HL7 examples too), then every file of the data directory
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
from carnet.synthetic import generate_population
from minting import Mint
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
# Dates and short numbers are not telling, and stored timestamps (microseconds) could hold them.
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2}([T ][\d:.]+)?)?)?(Z|[+-]\d{2}:\d{2})?")
_NUMBER = re.compile(r"[\d.]+")
#: A server-assigned id (UUID, lower-case hex). Ids are not data, and a short code such as the
#: LOINC 8462-4 is, by chance, part of about one random id in 65,536: they are blanked first.
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SPACE = re.compile(r"\s+")
#: Files the local key provider and the development issuer keep in the key directory.
KEY_FILES = re.compile(
    r"^(kek-\d{6}\.key|current|dev-issuer\.pem|journal-signer\.key|journal-verifier\.pub|web-session\.key"
    r"|[0-9a-f]{3}\.shares|\.lock"  # the erasure shares (crypto/shares.py) and their writers' lock
    # The server's own signing and decryption keys: break-glass confirmations (auth/confirmation.py),
    # SMART ID tokens (web/smart.py), encrypted ID tokens from the OpenID provider (auth/oidc.py).
    r"|confirmation\.key|smart-id-token\.jwk|oidc-encryption\.jwk)$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """What a test stored: how many resources, and the plaintext to look for."""

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
    return {
        n
        for n in (s.strip() for s in found)
        if len(n) >= MIN_LENGTH
        and not _is_generic(n)
        and not n.startswith(("http://", "https://", "urn:"))
        and not _DATE.fullmatch(n)
        and not (_NUMBER.fullmatch(n) and len(n) < 10)
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


class Patterns:
    """The byte forms of the needles, searched in one pass (a regular expression shaped as a trie).

    Forms: UTF-8 as sent and in lower case; for the 40 longest needles also UTF-16 (both byte
    orders) and base64 at each alignment. Needles are cut to 40 characters.
    """

    def __init__(self, needles: Iterable[str]) -> None:
        self.forms: dict[bytes, str] = {}
        cut = sorted({n[:40] for n in needles})
        for needle in cut:
            self.forms[needle.encode()] = needle
            self.forms[needle.lower().encode()] = needle
        for needle in sorted(cut, key=lambda n: (-len(n), n))[:40]:
            self.forms[needle.encode("utf-16-le")] = needle
            self.forms[needle.encode("utf-16-be")] = needle
            for encoded in _base64_forms(needle.encode()):
                if len(encoded) >= 8:
                    self.forms[encoded] = needle
        self._regex = re.compile(_trie(self.forms), re.DOTALL)

    def hits(self, blob: bytes) -> list[str]:
        """Return the needles found in ``blob``, outside the server-assigned ids."""
        blob = _UUID.sub(lambda m: b"\x00" * len(m.group()), blob)
        return sorted({self.forms[m] for m in self._regex.findall(blob)})


def _trie(words: Iterable[bytes]) -> bytes:
    """A regular expression matching exactly ``words``, shaped as a trie (one pass, fast rejection)."""
    root: dict[int | None, Any] = {}
    for word in words:
        node = root
        for byte in word:
            node = node.setdefault(byte, {})
        node[None] = {}

    def build(node: dict[int | None, Any]) -> bytes:
        branches = [
            re.escape(bytes([b])) + build(child)
            for b, child in sorted((k, v) for k, v in node.items() if k is not None)
        ]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        # A word that is also the prefix of a longer word may end here.
        return b"(?:" + body + b")?" if None in node else body

    return build(root)


#: Where the stored data comes from: the project's own generator always, the external corpus
#: when it is there (``external``: deselected, with one line in the summary, when it is absent).
SOURCES = ["synthetic", pytest.param("corpus", marks=pytest.mark.external)]


def store(client: TestClient, auth: Mint, source: str) -> Stored:
    """Store records from ``source`` and search them by identifier and name; return what to look for."""
    if source == "synthetic":
        needles, count, patient = _store_synthetic(client, auth)
    else:
        needles, count, patient = _store_corpus(client, auth)
    # Search by identifier and family name: query strings must not reach the logs either.
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


def _store_synthetic(client: TestClient, auth: Mint) -> tuple[set[str], int, dict[str, Any]]:
    """Store five generated patients' transaction bundles, documents included."""
    needles: set[str] = set()
    count = 0
    patients: list[dict[str, Any]] = []
    for item in generate_population(5, seed=20261206):
        system, value = item.ins
        headers = auth(kind="patient", identifier=f"{system}|{value}")
        response = client.post("/fhir", content=item.to_json(), headers=headers)
        assert response.status_code == 200, response.text[:500]
        answers = response.json()["entry"]
        count += len(answers)
        # Read every resource back, and the whole record: reads must not log data either.
        for answer in answers:
            location = answer["response"]["location"].split("/_history/")[0]
            assert client.get(f"/fhir/{location}", headers=headers).status_code == 200, location
        # A document's Binary is kept with its DocumentReference, not as a resource version.
        count -= sum(e["resource"]["resourceType"] == "Binary" for e in item.bundle["entry"])
        for entry in item.bundle["entry"]:
            resource = entry["resource"]
            needles |= needles_of(resource)
            if resource["resourceType"] == "Patient":
                patients.append(resource)
    return needles, count, patients[0]


def _store_corpus(client: TestClient, auth: Mint) -> tuple[set[str], int, dict[str, Any]]:
    """Store three Synthea bundles and a spread of HL7 examples."""
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
    patient = next(
        e["resource"] for e in load(bundles[0])["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    return needles, count, patient


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _hits_in(paths: Iterable[Path], patterns: Patterns, root: Path) -> dict[str, list[str]]:
    """Map each file holding a needle to the needles it holds."""
    found = {str(p.relative_to(root)): patterns.hits(p.read_bytes()) for p in paths}
    return {name: needles for name, needles in found.items() if needles}


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


def _searchable(needles: frozenset[str], baseline: bytes) -> Patterns:
    patterns = Patterns(needles)
    assert patterns.hits(baseline) == [], "needles must not be in the empty database: pick others"
    assert len(needles) > 300, f"only {len(needles)} needles: the sample is too small to prove anything"
    return patterns


def test_scanner_finds_every_form_of_a_needle() -> None:
    """The scanner is not blind: it finds a needle as UTF-8, lower case, UTF-16 and base64 at any offset."""
    patterns = Patterns(["Marquardt", "Adolfo Marquardt", "999-65-9492"])
    assert patterns.hits(b"\x00\x01Marquardt\xff") == ["Marquardt"]
    assert patterns.hits(b"name:adolfo marquardt;") == ["Adolfo Marquardt"]
    assert patterns.hits(b"\x00" + "999-65-9492".encode("utf-16-be")) == ["999-65-9492"]
    for prefix in (b"", b"a", b"ab"):
        assert patterns.hits(base64.b64encode(prefix + b"Adolfo Marquardt!")) == ["Adolfo Marquardt"]
    assert patterns.hits(b"Marquard Adolf 99965949") == []
    codes = Patterns(["8462-4"])
    assert codes.hits(b"Observation/0f1e2d3c-8462-4abc-9def-0123456789ab") == []  # inside an id
    assert codes.hits(b"0f1e2d3c-8462-4abc-9def-0123456789ab 8462-4") == ["8462-4"]


@pytest.mark.parametrize("source", SOURCES)
def test_nothing_readable_at_rest(
    client: TestClient, auth: Mint, settings: Settings, services: Services, baseline: bytes, source: str
) -> None:
    """No name, identifier, display, code or narrative is in any data file, database row or key file."""
    stored = store(client, auth, source)
    assert stored.resources > 300
    patterns = _searchable(stored.needles, baseline)
    sqlite = settings.database_url.startswith("sqlite")
    files = _files(settings.data_dir)
    if sqlite:
        names = {p.name for p in files}
        assert {"carnet.sqlite3", "carnet.sqlite3-wal", "carnet.sqlite3-shm"} <= names
    assert _hits_in(files, patterns, settings.data_dir) == {}
    rows: dict[str, int] = {}
    for table, count, blob in _tables(services):
        rows[table] = count
        assert patterns.hits(blob) == [], table
    assert rows["resource_versions"] >= stored.resources
    keys = _files(settings.key_dir)
    assert [p.name for p in keys if not KEY_FILES.match(p.name)] == []
    assert _hits_in(keys, patterns, settings.key_dir) == {}
    if sqlite:
        # Closing the last connection checkpoints the WAL into the database file: look again.
        services.store.engine.dispose()
        assert _hits_in(_files(settings.data_dir), patterns, settings.data_dir) == {}


#: Loggers of the test's own HTTP client, which logs the URLs it requests (the server never does).
CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore")


@pytest.mark.parametrize("source", SOURCES)
def test_nothing_readable_in_logs(
    source: str,
    client: TestClient,
    auth: Mint,
    services: Services,
    baseline: bytes,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The server's logs of storing, refusing, searching and failing to open records hold no patient data."""
    caplog.set_level(logging.DEBUG)
    stored = store(client, auth, source)
    # A sealed value that no longer opens: the 500 is logged at ERROR level.
    with services.store.engine.begin() as connection:
        row = connection.execute(
            text("SELECT resource_id, sealed FROM resource_versions WHERE resource_type = 'Patient'")
        ).first()
        assert row is not None
        connection.execute(
            text("UPDATE resource_versions SET sealed = :s WHERE resource_id = :i"),
            {"s": bytes(row[1])[:-1] + bytes([row[1][-1] ^ 1]), "i": row[0]},
        )
    broken = client.get(f"/fhir/Patient/{row[0]}", headers=auth(kind="patient", patient=row[0]))
    assert broken.status_code == 500
    patterns = _searchable(stored.needles, baseline)
    server = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    assert any(r.name == "carnet.api" and r.levelno == logging.ERROR for r in server)
    assert sum(r.name == "carnet.api" for r in server) > 200, "the access log was not captured"
    logged = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''} {r.exc_info!r}"
        for r in server
    )
    output = capfd.readouterr()
    assert patterns.hits((logged + output.out + output.err).encode()) == []
