"""Built-in patient accounts: a desk enrolment code, a passkey, recovery codes and TOTP (no OpenID provider).

The passkeys are made by a software authenticator below (a real P-256 key, real CBOR and
signatures, as a security key would), and checked by the ``webauthn`` library inside Carnet.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cbor2
import pyotp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.api.app import Services, build_services, create_app
from carnet.cli import app as cli_app
from carnet.domain.principal import ActorKind, Identifier, Principal
from carnet.settings import Settings
from carnet.web import patient_accounts as account_routes
from carnet.web import sign_in_means as means_routes
from carnet.web.access_visits import read_access
from carnet.web.patient_accounts import REFUSALS
from journal_requests import journal_of

ORIGIN = "https://testserver"
TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
NIR = "2840312345678"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Authenticator:
    """A software passkey: one P-256 key, its credential id and counter."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    counter: int = 0

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(self, options: dict[str, object], origin: str = ORIGIN) -> str:
        """The JSON of ``navigator.credentials.create`` for these options."""
        numbers = self.key.public_key().public_numbers()
        cose = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        rp = options["rp"]
        assert isinstance(rp, dict)
        auth_data = (
            hashlib.sha256(str(rp["id"]).encode()).digest()
            + bytes([0x45])
            + struct.pack(">I", self.counter)
            + bytes(16)
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + cbor2.dumps(cose)
        )
        client = self._client_data("webauthn.create", str(options["challenge"]), origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": _b64(self.credential_id),
                "rawId": _b64(self.credential_id),
                "type": "public-key",
                "response": {"clientDataJSON": _b64(client), "attestationObject": _b64(attestation)},
                "clientExtensionResults": {},
            }
        )

    def get(self, options: dict[str, object], origin: str = ORIGIN) -> str:
        """The JSON of ``navigator.credentials.get`` for these options (the counter goes up)."""
        self.counter += 1
        auth_data = (
            hashlib.sha256(str(options["rpId"]).encode()).digest()
            + bytes([0x05])
            + struct.pack(">I", self.counter)
        )
        client = self._client_data("webauthn.get", str(options["challenge"]), origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {
                "id": _b64(self.credential_id),
                "rawId": _b64(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": _b64(client),
                    "authenticatorData": _b64(auth_data),
                    "signature": _b64(signature),
                    "userHandle": None,
                },
                "clientExtensionResults": {},
            }
        )


@pytest.fixture
def carnet(settings: Settings) -> Iterator[tuple[TestClient, Services, str]]:
    """Carnet at https://testserver without a patient OpenID provider; Élise Léger's record."""
    here = replace(settings, base_url=f"{ORIGIN}/fhir")
    services = build_services(here)
    opener = Principal(kind=ActorKind.PATIENT, subject="t", identifier=Identifier(system=TEST_NIR, value=NIR))
    created = services.records.records(opener).create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": TEST_NIR, "value": NIR}],
            "name": [{"family": "Léger", "given": ["Élise"]}],
            "birthDate": "1984-03-12",
            "gender": "female",
        }
    )
    with TestClient(create_app(here, services, background=False), base_url=ORIGIN) as client:
        yield client, services, created.stored.resource_id
    services.store.engine.dispose()


def _csrf(text: str) -> str:
    return text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def _denials(services: Services) -> list[tuple[str, ...]]:
    return [e.reasons for e in services.sign_ins.recent() if e.decision == "deny"]


def _enrol(client: TestClient, services: Services, patient_id: str, key: Authenticator) -> list[str]:
    code = services.patient_accounts.issue_enrolment(patient_id)
    token = _csrf(client.get("/login/patient/account").text)
    asked = client.post("/login/patient/enrol", data={"csrf_token": token, "code": code})
    assert asked.status_code == 200
    assert 'id="register-form"' in asked.text
    options = client.post("/login/patient/passkey/new", data={"csrf_token": token}).json()
    assert options["rp"]["id"] == "testserver"
    done = client.post(
        "/login/patient/passkey/register", data={"csrf_token": token, "credential": key.create(options)}
    )
    assert done.status_code == 200, done.text[:400]
    again = client.post("/login/patient/enrol", data={"csrf_token": _csrf(done.text), "code": code})
    assert again.status_code == 403  # the code was spent
    return [c.split("</code>")[0] for c in done.text.split("<li><code>")[1:]]


def _sign_out(client: TestClient) -> None:
    home = client.get("/patient/")
    client.post("/logout", data={"csrf_token": _csrf(home.text)})
    assert client.get("/patient/", follow_redirects=False).status_code == 303


def test_enrol_a_passkey_then_sign_in_with_it(carnet: tuple[TestClient, Services, str]) -> None:
    """A desk code lets the patient create a passkey; the passkey then opens their record, and only theirs."""
    client, services, patient_id = carnet
    key = Authenticator()
    codes = _enrol(client, services, patient_id, key)
    assert len(codes) == 10
    assert client.get("/patient/").status_code == 200
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    options = client.post("/login/patient/passkey/options", data={"csrf_token": token}).json()
    signed = client.post("/login/patient/passkey", data={"csrf_token": token, "credential": key.get(options)})
    assert signed.status_code == 200
    assert 'id="signed-in-continue"' in signed.text
    assert client.get("/patient/").status_code == 200
    accepted = [e.reasons for e in services.sign_ins.recent() if e.decision == "permit"]
    assert ("account:passkey",) in accepted
    assert ("account:passkey-enrolled",) in accepted


def test_a_replayed_or_foreign_assertion_is_refused(carnet: tuple[TestClient, Services, str]) -> None:
    """A replayed challenge, another origin, an unknown passkey or garbage: 4xx and a journaled refusal."""
    client, services, patient_id = carnet
    key = Authenticator()
    _enrol(client, services, patient_id, key)
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    options = client.post("/login/patient/passkey/options", data={"csrf_token": token}).json()
    assertion = key.get(options)
    assert (
        client.post("/login/patient/passkey", data={"csrf_token": token, "credential": assertion}).status_code
        == 200
    )
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    replayed = client.post("/login/patient/passkey", data={"csrf_token": token, "credential": assertion})
    assert replayed.status_code == 400
    assert 'id="account-error"' in replayed.text
    options = client.post("/login/patient/passkey/options", data={"csrf_token": token}).json()
    foreign = key.get(options, origin="https://evil.example")
    assert (
        client.post("/login/patient/passkey", data={"csrf_token": token, "credential": foreign}).status_code
        == 401
    )
    for junk in (Authenticator().get(options), "{}", "not json", ""):
        client.post("/login/patient/passkey/options", data={"csrf_token": token})
        answer = client.post("/login/patient/passkey", data={"csrf_token": token, "credential": junk})
        assert answer.status_code == 401, junk
    assert client.get("/patient/", follow_redirects=False).status_code == 303
    denials = _denials(services)
    assert ("account:challenge",) in denials
    assert denials.count(("account:passkey",)) >= 5


def test_a_replayed_registration_or_foreign_origin_enrols_nothing(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """A new passkey made for another origin is refused and the enrolment code stays usable."""
    client, services, patient_id = carnet
    code = services.patient_accounts.issue_enrolment(patient_id)
    token = _csrf(client.get("/login/patient/account").text)
    assert (
        client.post("/login/patient/enrol", data={"csrf_token": token, "code": "AAAA-BBBB"}).status_code
        == 403
    )
    client.post("/login/patient/enrol", data={"csrf_token": token, "code": code})
    options = client.post("/login/patient/passkey/new", data={"csrf_token": token}).json()
    bad = Authenticator().create(options, origin="https://evil.example")
    refused = client.post("/login/patient/passkey/register", data={"csrf_token": token, "credential": bad})
    assert refused.status_code == 400
    replay = client.post("/login/patient/passkey/register", data={"csrf_token": token, "credential": bad})
    assert replay.status_code == 400  # the challenge was taken by the first attempt
    assert services.patient_accounts.enrolment_record(code) == patient_id
    assert ("account:enrolment-code",) in _denials(services)
    assert ("account:challenge",) in _denials(services)


def test_recovery_codes_work_once_each(carnet: tuple[TestClient, Services, str]) -> None:
    """A recovery code with the INS signs in once; used again, wrong, or with another INS: 401, journaled."""
    client, services, patient_id = carnet
    codes = _enrol(client, services, patient_id, Authenticator())
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    first = client.post(
        "/login/patient/recovery", data={"csrf_token": token, "ins": NIR, "code": codes[0].lower()}
    )
    assert first.status_code == 200
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    for ins, code in (
        (NIR, codes[0]),
        (NIR, "ZZZZ-ZZZZ-ZZZZ-ZZZZ"),
        ("1840312345679", codes[1]),
        ("12", codes[1]),
    ):
        refused = client.post("/login/patient/recovery", data={"csrf_token": token, "ins": ins, "code": code})
        assert refused.status_code == 401, (ins, code)
    assert client.get("/patient/", follow_redirects=False).status_code == 303
    assert _denials(services).count(("account:recovery-code",)) == 4


def test_totp_as_a_fallback(carnet: tuple[TestClient, Services, str]) -> None:
    """A signed-in patient adds TOTP; the current code signs in once; a wrong or replayed code: 401."""
    client, services, patient_id = carnet
    _enrol(client, services, patient_id, Authenticator())
    setup = client.get("/login/patient/totp/setup")
    secret = setup.text.split('id="totp-secret">', 1)[1].split("<", 1)[0]
    wrong = client.post("/login/patient/totp/setup", data={"csrf_token": _csrf(setup.text), "code": "000000"})
    assert wrong.status_code == 422 or pyotp.TOTP(secret).now() == "000000"
    kept = client.post(
        "/login/patient/totp/setup",
        data={"csrf_token": _csrf(setup.text), "code": pyotp.TOTP(secret).now()},
        follow_redirects=False,
    )
    assert kept.status_code == 303
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    bad = str((int(pyotp.TOTP(secret).now()) + 1) % 1000000).zfill(6)
    assert (
        client.post("/login/patient/totp", data={"csrf_token": token, "ins": NIR, "code": bad}).status_code
        == 401
    )
    now = pyotp.TOTP(secret).now()
    assert (
        client.post("/login/patient/totp", data={"csrf_token": token, "ins": NIR, "code": now}).status_code
        == 200
    )
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    replayed = client.post("/login/patient/totp", data={"csrf_token": token, "ins": NIR, "code": now})
    assert replayed.status_code == 401
    assert _denials(services).count(("account:totp",)) == 2


def test_the_desk_issues_an_enrolment_code(
    carnet: tuple[TestClient, Services, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`carnet patient enrol --ins` prints a code that opens the enrolment; an unknown INS exits 2."""
    _client, services, patient_id = carnet
    for key, value in (
        ("CARNET_DATA_DIR", str(settings.data_dir)),
        ("CARNET_KEY_DIR", str(settings.key_dir)),
        ("CARNET_DATABASE_URL", settings.database_url),
    ):
        monkeypatch.setenv(key, value)
    printed = CliRunner().invoke(cli_app, ["patient", "enrol", "--ins", NIR])
    assert printed.exit_code == 0, printed.output
    code = printed.output.split("enrolment code ", 1)[1].split(" ", 1)[0]
    assert services.patient_accounts.enrolment_record(code) == patient_id
    assert CliRunner().invoke(cli_app, ["patient", "enrol", "--ins", "1840312345679"]).exit_code == 2


def test_every_message_of_the_account_pages_has_a_french_translation() -> None:
    """Each _("…") of the account templates and each refusal the account routes show has a French entry."""
    web = Path(account_routes.__file__).parent
    french = json.loads((web / "locales" / "fr.json").read_text(encoding="utf-8"))
    used = set(REFUSALS.values())
    for name in (
        "login_account.html",
        "login_enrol.html",
        "login_recovery_codes.html",
        "login_totp_setup.html",
    ):
        text = (web / "templates" / name).read_text(encoding="utf-8")
        used.update(m.group(2) for m in re.finditer(r"""_\(\s*(["'])((?:(?!\1).)+)\1""", text))
    assert len(used) > 25
    assert sorted(m for m in used if m not in french) == []


def _credential_actions(services: Services, patient_id: str) -> list[str]:
    return [e.action for e in journal_of(services, patient_id) if e.resource_type == "Credential"]


def test_the_sign_in_means_page_adds_and_removes_passkeys_but_never_the_last_way_in(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """Add a second passkey, remove one; the last one stays until an app is set up; each change journaled."""
    client, services, patient_id = carnet
    first, second = Authenticator(), Authenticator()
    _enrol(client, services, patient_id, first)
    shown = client.get("/patient/sign-in")
    assert shown.status_code == 200
    assert 'id="passkey-remove-1"' in shown.text
    assert 'id="passkey-remove-2"' not in shown.text
    assert "nécessite JavaScript" in shown.text
    token = _csrf(shown.text)
    options = client.post("/patient/sign-in/passkey/new", data={"csrf_token": token}).json()
    replayed = second.create(options)
    added = client.post("/patient/sign-in/passkey/add", data={"csrf_token": token, "credential": replayed})
    assert added.status_code == 200  # followed to the page
    assert 'id="passkey-remove-2"' in added.text
    again = client.post("/patient/sign-in/passkey/add", data={"csrf_token": token, "credential": replayed})
    assert again.status_code == 400  # the challenge was taken
    passkeys, _, _ = services.patient_accounts.means(patient_id)
    keys = [p.credential_key for p in passkeys]
    assert len(keys) == 2
    foreign = client.post(
        "/patient/sign-in/passkey/remove", data={"csrf_token": token, "passkey": "passkey:00"}
    )
    assert foreign.status_code == 404
    removed = client.post("/patient/sign-in/passkey/remove", data={"csrf_token": token, "passkey": keys[0]})
    assert removed.status_code == 200
    last = client.post("/patient/sign-in/passkey/remove", data={"csrf_token": token, "passkey": keys[1]})
    assert last.status_code == 409
    assert 'id="means-error"' in last.text
    assert len(services.patient_accounts.means(patient_id)[0]) == 1
    no_app = client.post("/patient/sign-in/totp/remove", data={"csrf_token": token})
    assert no_app.status_code == 404
    assert _credential_actions(services, patient_id) == [
        "credential-enrol",
        "credential-passkey-add",
        "credential-passkey-remove",
    ]


def test_new_recovery_codes_are_shown_once_and_the_old_ones_stop(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """Drawing new codes shows ten, once; an old code no longer signs in, a new one does; journaled."""
    client, services, patient_id = carnet
    old = _enrol(client, services, patient_id, Authenticator())
    token = _csrf(client.get("/patient/sign-in").text)
    drawn = client.post("/patient/sign-in/recovery", data={"csrf_token": token})
    assert drawn.status_code == 200
    assert drawn.headers["cache-control"] == "no-store"
    new = [c.split("</code>")[0] for c in drawn.text.split("<li><code>")[1:]]
    assert len(new) == 10
    assert not set(new) & set(old)
    assert "10 codes de secours non utilisés" in client.get("/patient/sign-in").text
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    stale = client.post("/login/patient/recovery", data={"csrf_token": token, "ins": NIR, "code": old[0]})
    assert stale.status_code == 401
    fresh = client.post("/login/patient/recovery", data={"csrf_token": token, "ins": NIR, "code": new[0]})
    assert fresh.status_code == 200
    assert _credential_actions(services, patient_id) == ["credential-enrol", "credential-recovery"]


def test_the_app_is_set_up_and_removed_from_the_page_and_then_the_last_passkey_may_go(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """With an app set up the only passkey may be removed, and then the app may not; every step journaled."""
    client, services, patient_id = carnet
    _enrol(client, services, patient_id, Authenticator())
    setup = client.get("/login/patient/totp/setup")
    secret = setup.text.split('id="totp-secret">', 1)[1].split("<", 1)[0]
    kept = client.post(
        "/login/patient/totp/setup", data={"csrf_token": _csrf(setup.text), "code": pyotp.TOTP(secret).now()}
    )
    assert kept.status_code == 200
    assert 'id="totp-on"' in kept.text
    token = _csrf(kept.text)
    only = services.patient_accounts.means(patient_id)[0][0].credential_key
    removed = client.post("/patient/sign-in/passkey/remove", data={"csrf_token": token, "passkey": only})
    assert removed.status_code == 200
    refused = client.post("/patient/sign-in/totp/remove", data={"csrf_token": token})
    assert refused.status_code == 409
    assert _credential_actions(services, patient_id) == [
        "credential-enrol",
        "credential-totp-add",
        "credential-passkey-remove",
    ]
    events = services.records.records(
        Principal(kind=ActorKind.PATIENT, subject="t", patient_id=patient_id)
    ).search("AuditEvent", [("patient", f"Patient/{patient_id}")])
    operations = {read_access(e, "t").operation for e in events.resources}
    assert {"credential-enrol", "credential-totp-add", "credential-passkey-remove"} <= operations


def test_only_a_patient_manages_sign_in_means(carnet: tuple[TestClient, Services, str]) -> None:
    """Nobody signed in is sent to sign in; the page is not a 500 for anyone."""
    client, _, _ = carnet
    assert client.get("/patient/sign-in", follow_redirects=False).status_code == 303


def test_every_message_of_the_sign_in_means_page_has_a_french_translation() -> None:
    """Each _("…") of the means page and each message its routes show has a French entry."""
    web = Path(account_routes.__file__).parent
    french = json.loads((web / "locales" / "fr.json").read_text(encoding="utf-8"))
    used = {*means_routes.DONE.values(), means_routes.LAST}
    text = (web / "templates" / "patient" / "sign_in.html").read_text(encoding="utf-8")
    used.update(m.group(2) for m in re.finditer(r"""_\(\s*(["'])((?:(?!\1).)+)\1""", text))
    assert len(used) > 15
    assert sorted(m for m in used if m not in french) == []


def test_a_built_in_account_carries_the_records_its_holder_represents(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """A mother enrolled with a passkey, registered at the desk for her son: she can switch to his record."""
    client, services, patient_id = carnet
    opener = Principal(
        kind=ActorKind.PATIENT, subject="t", identifier=Identifier(system=TEST_NIR, value="1150775000004")
    )
    son = (
        services.records.records(opener)
        .create(
            {
                "resourceType": "Patient",
                "identifier": [{"system": TEST_NIR, "value": "1150775000004"}],
                "name": [{"family": "Léger", "given": ["Hugo"]}],
            }
        )
        .stored.resource_id
    )
    desk = Principal(kind=ActorKind.ADMIN, subject="cli:desk")
    services.representations.add(
        son, basis="parent", name="Élise Léger", by=desk, representative_record=patient_id
    )
    _enrol(client, services, patient_id, Authenticator())
    listing = client.get("/patient/switch")
    assert listing.status_code == 200
    assert "Hugo Léger" in listing.text
