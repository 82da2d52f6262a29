"""Portal sessions and uploads (issue 11, item 7): an opaque cookie, sealed server-side state, 413 pages.

The patient portal's cookie used to be a signed but readable Starlette session holding the
patient's name, INS and record id. It is now a random id; the session lives in
``portal_sessions``, sealed, and is deleted at sign-out. An oversized upload gets the 413 page.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from carnet.api.app import Services, create_app
from carnet.crypto.aead import AESGCMCipher
from carnet.demo import SeededPatient, seed_population
from carnet.services.portal_sessions import PortalSessions
from carnet.settings import Settings
from carnet.store.tables import portal_sessions

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
SMALL_LIMIT = 100_000


@pytest.fixture
def patient(services: Services) -> SeededPatient:
    """One synthetic patient of the demo population."""
    return seed_population(services.records, patients=1, seed=2026)[0]


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


def _sign_in(client: TestClient, patient: SeededPatient) -> str:
    """Sign in through the form; return the CSRF token of the signed-in session."""
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login",
        data={
            "csrf_token": token,
            "kind": "patient",
            "identifier": f"{patient.ins_system}|{patient.ins_value}",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:300]
    return _csrf(client.get("/patient/").text)


def _rows(services: Services) -> list[bytes]:
    with services.store.engine.connect() as connection:
        return [bytes(r.sealed) for r in connection.execute(select(portal_sessions.c.sealed))]


def _decodings(value: str) -> list[bytes]:
    """The cookie value as text and as every base64 reading of it (a signed session is base64 JSON)."""
    out = [value.encode()]
    for part in [value, *value.split(".")]:
        padded = part + "=" * (-len(part) % 4)
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                out.append(decode(padded))
            except (binascii.Error, ValueError):
                continue
    return out


def test_the_session_cookie_is_an_opaque_id(client: TestClient, patient: SeededPatient) -> None:
    """After sign-in the cookie is 43 random URL-safe characters: no name, INS or record id in any reading."""
    _sign_in(client, patient)
    cookie = client.cookies["carnet_session"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)
    secrets_of_the_patient = [patient.ins_value, patient.patient_id, *patient.display.split()]
    for reading in _decodings(cookie):
        for secret in secrets_of_the_patient:
            assert secret.encode() not in reading


def test_the_cookie_is_http_only_and_strict(client: TestClient, patient: SeededPatient) -> None:
    """The session cookie is HttpOnly, SameSite=Strict, for the whole site, with a lifetime."""
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login",
        data={
            "csrf_token": token,
            "kind": "patient",
            "identifier": f"{patient.ins_system}|{patient.ins_value}",
        },
        follow_redirects=False,
    )
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith("carnet_session="))
    assert "HttpOnly" in header
    assert "SameSite=strict" in header or "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Max-Age=28800" in header


def test_the_session_is_sealed_in_the_database(
    client: TestClient, services: Services, patient: SeededPatient
) -> None:
    """The portal_sessions rows hold no name, INS or record id, and never the cookie's id."""
    _sign_in(client, patient)
    rows = _rows(services)
    assert rows
    cookie = client.cookies["carnet_session"].encode()
    for row in rows:
        for secret in (patient.ins_value.encode(), patient.patient_id.encode(), cookie):
            assert secret not in row
        assert b"principal" not in row


def test_sign_in_draws_a_new_session_id(client: TestClient, patient: SeededPatient) -> None:
    """The id issued before sign-in (for the form's CSRF token) is replaced: a planted id is worthless."""
    client.get("/login")
    before = client.cookies["carnet_session"]
    _sign_in(client, patient)
    after = client.cookies["carnet_session"]
    assert before != after
    with TestClient(client.app, base_url="http://testserver") as planted:
        planted.cookies.set("carnet_session", before)
        assert planted.get("/patient/", follow_redirects=False).status_code == 303


def test_sign_out_deletes_the_session(client: TestClient, services: Services, patient: SeededPatient) -> None:
    """Signing out deletes the row; the old cookie, replayed, is signed out and told to expire."""
    signed_in = _sign_in(client, patient)
    cookie = client.cookies["carnet_session"]
    count = len(_rows(services))
    out = client.post("/logout", data={"csrf_token": signed_in}, follow_redirects=False)
    assert out.status_code == 303
    assert len(_rows(services)) == count - 1
    with TestClient(client.app, base_url="http://testserver") as replay:
        replay.cookies.set("carnet_session", cookie)
        response = replay.get("/patient/", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert 'carnet_session=""' in response.headers.get(
            "set-cookie", ""
        ) or "Max-Age=0" in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("cookie", ["x" * 43, "not-an-id", "a" * 5000, "' OR 1=1 --"])
def test_a_forged_cookie_is_no_session(client: TestClient, cookie: str) -> None:
    """A cookie that names no session (or is not an id at all) is simply not signed in."""
    client.cookies.set("carnet_session", cookie)
    response = client.get("/patient/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_sessions_expire_and_are_pruned(services: Services) -> None:
    """A session opens until its lifetime ends; after, it reads as none, and the next new one prunes it."""
    now = [datetime(2026, 12, 6, 9, 0, tzinfo=UTC)]
    sessions = PortalSessions(store=services.store, cipher=AESGCMCipher(), clock=lambda: now[0])
    sessions.save("a" * 43, {"csrf": "t", "principal": {"kind": "patient"}}, new=True)
    assert sessions.open("a" * 43) == {"csrf": "t", "principal": {"kind": "patient"}}
    now[0] += timedelta(hours=7, minutes=59)
    assert sessions.open("a" * 43) is not None
    now[0] += timedelta(minutes=2)
    assert sessions.open("a" * 43) is None
    sessions.save("b" * 43, {"csrf": "u"}, new=True)
    assert len(_rows(services)) == 1


def test_an_update_keeps_the_expiry(services: Services) -> None:
    """Saving a changed session never extends it: the lifetime counts from sign-in."""
    now = [datetime(2026, 12, 6, 9, 0, tzinfo=UTC)]
    sessions = PortalSessions(store=services.store, cipher=AESGCMCipher(), clock=lambda: now[0])
    sessions.save("c" * 43, {"n": 1}, new=True)
    now[0] += timedelta(hours=7)
    sessions.save("c" * 43, {"n": 2}, new=False)
    assert sessions.open("c" * 43) == {"n": 2}
    now[0] += timedelta(hours=2)
    assert sessions.open("c" * 43) is None
    with services.store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(portal_sessions)).scalar_one() == 1


# -- uploads ----------------------------------------------------------------------------------------


@pytest.fixture
def small_client(settings: Settings, services: Services) -> Iterator[TestClient]:
    """The app with a 100 kB body limit (CARNET_MAX_BODY_BYTES=100000)."""
    small = dataclasses.replace(settings, max_body_bytes=SMALL_LIMIT)
    app = create_app(small, dataclasses.replace(services, settings=small), background=False)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def _documents(client: TestClient) -> int:
    return len(re.findall(r'id="doc-([^"]+)"', client.get("/patient/documents").text))


@pytest.mark.parametrize(
    ("language", "words"), [("fr", "Le fichier est trop volumineux"), ("en", "The file is too large")]
)
@pytest.mark.parametrize("size", [SMALL_LIMIT + 1, SMALL_LIMIT + 200_000])
def test_an_oversized_upload_gets_the_413_page(
    small_client: TestClient, patient: SeededPatient, language: str, words: str, size: int
) -> None:
    """A file over the limit (just over, or far over) gets the 413 page in the visitor's language; nothing is stored."""
    signed_in = _sign_in(small_client, patient)
    small_client.cookies.set("carnet_lang", language)
    before = _documents(small_client)
    response = small_client.post(
        "/patient/documents",
        data={"csrf_token": signed_in, "title": "Trop gros"},
        files={"file": ("gros.pdf", PDF + b"0" * (size - len(PDF)), "application/pdf")},
        follow_redirects=False,
    )
    assert response.status_code == 413
    assert words in response.text
    assert "text/html" in response.headers["content-type"]
    assert _documents(small_client) == before


def test_a_chunked_oversized_upload_gets_the_413_page(
    small_client: TestClient, patient: SeededPatient
) -> None:
    """A body with no Content-Length is cut off where it crosses the limit, with the 413 page."""
    signed_in = _sign_in(small_client, patient)
    boundary = "carnetboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{signed_in}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nTrop gros\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="g.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    chunks = iter([head, PDF, *([b"0" * 50_000] * 6), f"\r\n--{boundary}--\r\n".encode()])
    response = small_client.post(
        "/patient/documents",
        content=chunks,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        follow_redirects=False,
    )
    assert response.status_code == 413


def test_an_upload_under_the_limit_is_stored(small_client: TestClient, patient: SeededPatient) -> None:
    """The limit refuses only what exceeds it: a small PDF is still stored."""
    signed_in = _sign_in(small_client, patient)
    before = _documents(small_client)
    response = small_client.post(
        "/patient/documents",
        data={"csrf_token": signed_in, "title": "Petit"},
        files={"file": ("petit.pdf", PDF, "application/pdf")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _documents(small_client) == before + 1
