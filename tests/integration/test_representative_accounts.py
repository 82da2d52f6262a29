"""A representative without a record, on a Carnet without a patient OpenID provider: a built-in account.

The desk registers the link (``carnet patient represent add`` prints a claim code); the parent
types that code on the built-in enrolment page, creates a passkey (a software authenticator, real
P-256 signatures checked by ``webauthn``) and gets recovery codes and an account number. The
passkey then signs in as the representative of the child's record, every read is journaled in the
child's record under the account's own identity, and ending the link stops access at the next page.
"""

from __future__ import annotations

import test_patient_accounts
from starlette.testclient import TestClient
from test_patient_accounts import TEST_NIR, Authenticator, _csrf, _denials

from carnet.api.app import Services
from carnet.domain.principal import ActorKind, Identifier, Principal
from journal_requests import journal_of

carnet = test_patient_accounts.carnet  # the fixture: Carnet without a patient OpenID provider
CHILD = "1150312345678"
DESK = Principal(kind=ActorKind.ADMIN, subject="cli:desk")


def _child(services: Services) -> str:
    opener = Principal(
        kind=ActorKind.PATIENT, subject="t", identifier=Identifier(system=TEST_NIR, value=CHILD)
    )
    return (
        services.records.records(opener)
        .create(
            {
                "resourceType": "Patient",
                "identifier": [{"system": TEST_NIR, "value": CHILD}],
                "name": [{"family": "Durand", "given": ["Léo"]}],
            }
        )
        .stored.resource_id
    )


def _claim(services: Services, basis: str) -> tuple[str, str, str]:
    """The child's record and the desk's link to it without a record: (child, link id, claim code)."""
    child = _child(services)
    link_id, code = services.representations.add(child, basis=basis, name="Marie Durand", by=DESK)
    assert code is not None
    return child, link_id, code


def _enrol(client: TestClient, code: str, key: Authenticator) -> tuple[list[str], str]:
    token = _csrf(client.get("/login/patient/account").text)
    asked = client.post("/login/patient/enrol", data={"csrf_token": token, "code": code})
    assert asked.status_code == 200, asked.text[:400]
    options = client.post("/login/patient/passkey/new", data={"csrf_token": token}).json()
    done = client.post(
        "/login/patient/passkey/register", data={"csrf_token": token, "credential": key.create(options)}
    )
    assert done.status_code == 200, done.text[:400]
    account = done.text.split('id="representative-account"', 1)[1].split("<code>", 1)[1].split("</code>")[0]
    codes = [c.split("</code>")[0] for c in done.text.split("<li><code>")[1:]]
    return codes, account


def _sign_out(client: TestClient) -> None:
    home = client.get("/patient/")
    client.post("/logout", data={"csrf_token": _csrf(home.text)})
    assert client.get("/patient/", follow_redirects=False).status_code == 303


def _passkey(client: TestClient, key: Authenticator) -> int:
    token = _csrf(client.get("/login/patient/account").text)
    options = client.post("/login/patient/passkey/options", data={"csrf_token": token}).json()
    return client.post(
        "/login/patient/passkey", data={"csrf_token": token, "credential": key.get(options)}
    ).status_code


def test_a_representative_without_a_record_enrols_with_the_claim_code_and_acts_for_the_child(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """The claim code enrols a passkey once; the passkey acts for the child, journaled, until the link ends."""
    client, services, _ = carnet
    child, link_id, code = _claim(services, "parent")
    key = Authenticator()
    codes, account = _enrol(client, code, key)
    assert len(codes) == 10
    assert account.startswith("rep-")
    # The claim code is spent: typed again, the enrolment page refuses it.
    token = _csrf(client.get("/login/patient/account").text)
    assert client.post("/login/patient/enrol", data={"csrf_token": token, "code": code}).status_code == 403
    _sign_out(client)

    assert _passkey(client, key) == 200
    home = client.get("/patient/")
    assert home.status_code == 200
    assert "Léo" in home.text  # acting for the child's record
    assert client.get("/patient/switch").status_code == 200
    assert client.get("/patient/sign-in", follow_redirects=False).status_code in (303, 401, 403)
    subject = f"account:{account}"
    entries = journal_of(services, child)
    assert ("represent-claim", subject) in {(e.action, e.actor_id) for e in entries}
    reads = [e for e in entries if e.actor_id == subject and e.action not in ("represent-claim",)]
    assert reads
    assert {(e.actor_kind, e.mode) for e in reads} == {("representative", "representative")}
    accepted = [(e.reasons, e.actor_id) for e in services.sign_ins.recent() if e.decision == "permit"]
    assert (("account:passkey",), subject) in accepted

    # The desk ends the link: the next page refuses, and the passkey no longer signs in.
    services.representations.remove(child, link_id, by=DESK)
    assert client.get("/patient/", follow_redirects=False).status_code == 303
    assert _passkey(client, key) == 403
    assert ("account:represents-nobody",) in _denials(services)


def test_a_representative_signs_in_with_the_account_number_and_a_recovery_code(
    carnet: tuple[TestClient, Services, str],
) -> None:
    """A recovery code signs in once with the account number (any case); a wrong or spent one is a 401."""
    client, services, _ = carnet
    _, _, code = _claim(services, "tutelle")
    codes, account = _enrol(client, code, Authenticator())
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    wrong = client.post(
        "/login/patient/recovery", data={"csrf_token": token, "ins": account, "code": "ZZZZ-ZZZZ-ZZZZ-ZZZZ"}
    )
    assert wrong.status_code == 401
    first = client.post(
        "/login/patient/recovery", data={"csrf_token": token, "ins": account.upper(), "code": codes[0]}
    )
    assert first.status_code == 200
    assert "Léo" in client.get("/patient/").text
    _sign_out(client)
    token = _csrf(client.get("/login/patient/account").text)
    again = client.post(
        "/login/patient/recovery", data={"csrf_token": token, "ins": account, "code": codes[0]}
    )
    assert again.status_code == 401
