"""Nothing lost, nothing duplicated (issue 13 item 7): MSH-10 idempotency, dead letters and replay,
and ``kill -9`` of a real ``carnet serve`` during an MLLP burst."""

from __future__ import annotations

import asyncio
import base64
import functools
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services, build_services
from carnet.api.auth import issue_token
from carnet.cli import app as cli
from carnet.domain.errors import Conflict
from carnet.domain.feeds import FeedKind
from carnet.feeds import mllp
from carnet.feeds.cda import parse_cda
from carnet.settings import Settings
from carnet.synthetic import generate_population
from carnet.synthetic.hl7v2 import SendingSystem, hl7v2_message
from event_loops import run_to_end
from minting import Mint
from served import ForkedServer, free_port, serve_env

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
CLASSES = frozenset({"10", "11", "31", "42", "43", "44", "45", "52", "60"})


@functools.cache
def _cda() -> bytes:
    patient = next(iter(generate_population(1, seed=31, documents_per_patient=1)))
    for entry in patient.bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary" and resource["contentType"] == "text/xml":
            return base64.b64decode(resource["data"])
    raise AssertionError("no CDA generated")


def _ins() -> tuple[str, str]:
    ins = parse_cda(_cda()).ins
    assert ins is not None
    assert ins.extension is not None
    return ins.root, ins.extension


def _document(number: int) -> tuple[str, bytes]:
    """A distinct CDA (its own ClinicalDocument/id) and that id's root."""
    root = f"2.25.{1_000_000 + number}"
    found = re.search(rb'<id root="([0-9.]+)" />', _cda())
    assert found is not None
    return root, _cda().replace(found.group(0), f'<id root="{root}" />'.encode(), 1)


SENDER = f"{SendingSystem().application}^{SendingSystem().facility}"


def _message(cda: bytes, control_id: str, second: bytes | None = None) -> bytes:
    return hl7v2_message(
        cda,
        ins=_ins(),
        type_code="11488-4",
        type_label="CR",
        control_id=control_id,
        sent_at=NOW,
        second=second,
    )


SECOND = 50_000  # the second document of message n is document n + SECOND (a round sends fewer)


def _burst_message(number: int) -> tuple[bytes, tuple[str, ...]]:
    """Message ``number`` of a burst and the roots of its documents: every odd one carries two
    (a level 1 and a level 3 CDA of one report, as the volet's ORU may), which must be stored
    together or not at all."""
    root, cda = _document(number)
    if number % 2 == 0:
        return _message(cda, f"K{number}"), (root,)
    second_root, second = _document(number + SECOND)
    return _message(cda, f"K{number}", second), (root, second_root)


def _msa(frame: bytes) -> str:
    return frame.split(b"MSA|", 1)[1][:2].decode()


def _open_record(client: TestClient, auth: Mint) -> dict[str, str]:
    system, value = _ins()
    headers = auth(kind="patient", identifier=f"urn:oid:{system}|{value}")
    patient = {"resourceType": "Patient", "identifier": [{"system": f"urn:oid:{system}", "value": value}]}
    opened = client.post("/fhir/Patient", json=patient, headers=headers)
    assert opened.status_code == 201, opened.text
    record = str(opened.json()["id"])
    return {**auth(kind="patient", patient=record), "X-Test-Record": record}


def _document_count(client: TestClient, patient: dict[str, str]) -> int:
    found = client.get(f"/fhir/DocumentReference?patient={patient['X-Test-Record']}", headers=patient)
    assert found.status_code == 200, found.text
    return len(found.json().get("entry", []))


def test_same_control_id_gets_the_same_ack_and_stores_once(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """A message resent with its MSH-10 is answered with the first ACK, byte for byte, and stores nothing new."""
    patient = _open_record(client, auth)
    services.feeds.add("lab", name="Lab", kind=FeedKind.HL7V2, classes=CLASSES, sender=SENDER)
    _, cda = _document(1)
    first = services.hl7v2.receive("lab", _message(cda, "SAME-1"))
    again = services.hl7v2.receive("lab", _message(cda, "SAME-1"))
    assert first.error is None
    assert again.ack == first.ack
    assert again.outcome == "duplicate"
    assert _document_count(client, patient) == 1


def test_refused_message_is_dead_lettered_sealed_and_replayed_after_the_fix(
    client: TestClient, services: Services, auth: Mint, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message for a record not yet open is AE'd and kept sealed; once the record exists, carnet feeds replay takes it."""
    services.feeds.add("lab", name="Lab", kind=FeedKind.HL7V2, classes=CLASSES, sender=SENDER)
    _, cda = _document(2)
    refused = services.hl7v2.receive("lab", _message(cda, "EARLY-1"))
    assert refused.error is not None
    assert refused.error.application_code == "902"
    (letter,) = services.hl7v2.dead_letters()
    assert (letter.feed_id, letter.control_id, letter.error_code) == ("lab", "EARLY-1", "902")
    assert letter.sealed == b""  # the listing never carries content
    with services.store.session() as session:
        stored = session.letter(letter.letter_id)
    assert stored is not None
    assert _ins()[1].encode() not in stored.sealed
    assert base64.b64encode(cda)[:40] not in stored.sealed
    patient = _open_record(client, auth)
    monkeypatch.setenv("CARNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CARNET_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARNET_DATABASE_URL", settings.effective_database_url)
    runner = CliRunner()
    listed = runner.invoke(cli, ["feeds", "dead-letters"])
    assert letter.letter_id in listed.output
    replayed = runner.invoke(cli, ["feeds", "replay", "--all"])
    assert replayed.exit_code == 0, replayed.output
    assert _document_count(client, patient) == 1
    assert services.hl7v2.dead_letters() == []
    with pytest.raises(Conflict):
        services.hl7v2.replay(letter.letter_id)
    # The sender resending it after the replay gets AA, and nothing more is stored.
    assert services.hl7v2.receive("lab", _message(cda, "EARLY-1")).error is None
    assert _document_count(client, patient) == 1


# -- kill -9 during a burst -------------------------------------------------------------------------

SHORT_ROUNDS = 2
LONG_ROUNDS = 200


@pytest.fixture
def feed_server(tmp_path: Path, database_url: str) -> Iterator[ForkedServer]:
    """A forked ``carnet serve`` with an MLLP listener for a registered lab feed, and an open record."""
    server = ForkedServer(serve_env(tmp_path, free_port(), database_url), tmp_path / "server.log")
    settings = Settings(data_dir=tmp_path / "data", key_dir=tmp_path / "keys", database_url=database_url)
    services = build_services(settings)
    services.feeds.add("lab", name="Lab", kind=FeedKind.HL7V2, classes=CLASSES, sender=SENDER)
    services.store.engine.dispose()
    server.env["CARNET_MLLP_PORT"] = str(free_port())
    server.env["CARNET_MLLP_FEED"] = "lab"
    try:
        yield server
    finally:
        server.stop()


def _send_until(
    stop: threading.Event,
    first: threading.Event,
    port: int,
    start: int,
    acked: dict[str, tuple[str, ...]],
    sent: list[tuple[str, ...]],
) -> None:
    """Send messages one by one until stopped or the server dies; note each one sent, and each ACKed AA."""
    number = start
    while not stop.is_set():
        message, roots = _burst_message(number)
        sent.append(roots)
        try:
            (frame,) = run_to_end(mllp.send("127.0.0.1", port, [message], timeout=30))
        except (OSError, TimeoutError, StopAsyncIteration, mllp.FrameError, ValueError):
            return
        if _msa(frame) == "AA":
            acked[f"K{number}"] = roots
            first.set()
        number += 1


def _stored_roots(http: httpx.Client, url: str, patient: dict[str, str], record: str) -> list[str]:
    roots: list[str] = []
    next_url: str | None = f"{url}/DocumentReference?patient={record}&_count=500"
    while next_url:
        bundle = http.get(next_url, headers=patient).json()
        roots += [
            e["resource"]["masterIdentifier"]["value"].removeprefix("urn:oid:")
            for e in bundle.get("entry", [])
        ]
        next_url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return roots


def kill_rounds(server: ForkedServer, rounds: int, seed: int) -> int:
    """Kill -9 the server ``rounds`` times during a burst; every AA'd message must be stored once,
    and no message, acknowledged or not, may be stored in part (one of its two documents only)."""
    rng = random.Random(seed)
    settings = Settings(key_dir=Path(server.env["CARNET_KEY_DIR"]))
    now = datetime.now(UTC)
    system, value = _ins()
    token = issue_token(
        settings,
        {"kind": "patient", "sub": "p", "identifier": f"urn:oid:{system}|{value}"},
        now=now,
        lifetime=timedelta(hours=2),
    )
    port = int(server.env["CARNET_MLLP_PORT"])
    acked: dict[str, tuple[str, ...]] = {}
    sent: list[tuple[str, ...]] = []
    server.start()
    with httpx.Client(timeout=30) as http:
        patient = {"resourceType": "Patient", "identifier": [{"system": f"urn:oid:{system}", "value": value}]}
        opened = http.post(
            f"{server.url}/Patient", json=patient, headers={"Authorization": f"Bearer {token}"}
        )
        assert opened.status_code == 201, opened.text
        record = opened.json()["id"]
        holder = issue_token(
            settings,
            {"kind": "patient", "sub": "p", "patient": opened.json()["id"]},
            now=now,
            lifetime=timedelta(hours=2),
        )
        headers = {"Authorization": f"Bearer {holder}"}
        for number in range(rounds):
            stop, first = threading.Event(), threading.Event()
            this_round: dict[str, tuple[str, ...]] = {}
            sender = threading.Thread(
                target=_send_until,
                args=(stop, first, port, number * 100_000, this_round, sent),
                daemon=True,
            )
            sender.start()
            assert first.wait(timeout=60), f"round {number}: no message acknowledged"
            time.sleep(rng.uniform(0, 0.3))
            server.kill()
            stop.set()
            sender.join(timeout=60)
            server.start()
            acked |= this_round
            stored = _stored_roots(http, server.url, headers, record)
            lost = {root for roots in acked.values() for root in roots} - set(stored)
            assert lost == set(), (
                f"round {number}: acknowledged messages lost after kill -9: {sorted(lost)[:5]}"
            )
            assert len(stored) == len(set(stored)), "a document was stored twice"
            halves = [roots for roots in sent if 0 < len(set(roots) & set(stored)) < len(roots)]
            assert halves == [], f"round {number}: a message stored in part after kill -9: {halves[:3]}"
        # Resending every acknowledged message changes nothing.
        resent = [_burst_message(int(c[1:]))[0] for c in sorted(acked)[:20]]
        # In a thread of its own, as the sender's: a browser test's Playwright loop, still running
        # in this worker's main thread, would make asyncio.run refuse here.
        with ThreadPoolExecutor(1) as pool:
            replies = pool.submit(lambda: asyncio.run(mllp.send("127.0.0.1", port, resent))).result(
                timeout=120
            )
        assert {_msa(r) for r in replies} == {"AA"}
        stored = _stored_roots(http, server.url, headers, record)
        assert len(stored) == len(set(stored))
    assert any(len(roots) == 2 for roots in acked.values()), "no two-document message was acknowledged"
    return len(acked)


def test_kill9_during_mllp_burst_loses_no_acknowledged_message(feed_server: ForkedServer) -> None:
    """kill -9 during an MLLP burst: every message ACKed AA is in the record after restart, once."""
    assert kill_rounds(feed_server, SHORT_ROUNDS, seed=13) > 0


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_kill9_during_mllp_bursts_soak(feed_server: ForkedServer) -> None:
    """200 kill -9 rounds during MLLP bursts lose and duplicate nothing acknowledged."""
    assert kill_rounds(feed_server, LONG_ROUNDS, seed=14) > 0
