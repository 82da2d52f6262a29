"""MLLP does not trust the port (issue 13, item 1's transport): mutual TLS names the feed, or MSH-3^MSH-4.

Real TCP, real TLS (Python ssl, certificates made here with cryptography): a sender presenting the
certificate registered for a feed gets AA and its document is stored; another certificate signed
by the same authority gets AR with ERR, is dead-lettered and stores nothing; a client without a
certificate never completes the handshake. Over plain TCP the listener refuses to start for a
feed without a registered sender, and a message naming another sender gets AR.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import hl7
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient
from test_hl7v2_feed import Hospital, _cda, _message
from typer.testing import CliRunner

from carnet.api.app import Services, start_mllp
from carnet.cli import app as cli
from carnet.crypto.certificates import certificate_fingerprint
from carnet.domain.errors import ConfigurationError
from carnet.domain.feeds import FeedKind
from carnet.feeds import mllp
from carnet.services.feed_intake import UNKNOWN_SENDER
from carnet.settings import Settings
from carnet.synthetic.hl7v2 import SendingSystem
from event_loops import run_to_end
from minting import Mint

NOW = dt.datetime.now(dt.UTC)


def _issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if name == "localhost":
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


class Pki:
    """A certificate authority, the listener's certificate, and two senders' certificates (PEM files)."""

    def __init__(self, folder: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue("Carnet test CA", ca_key, None, ca=True)
        self.ca = self._write(folder, "ca", ca, None)
        authority = (ca.subject, ca_key)
        self.server = self._pair(folder, "localhost", authority)
        self.registered = self._pair(folder, "dpi-hopital-a", authority)
        self.stranger = self._pair(folder, "dpi-inconnu", authority)

    def _pair(
        self, folder: Path, name: str, authority: tuple[x509.Name, ec.EllipticCurvePrivateKey]
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        return self._write(folder, name, _issue(name, key, authority), key), folder / f"{name}.key"

    @staticmethod
    def _write(
        folder: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey | None
    ) -> Path:
        path = folder / f"{name}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (folder / f"{name}.key").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return path

    def client(self, pair: tuple[Path, Path] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if pair is not None:
            context.load_cert_chain(str(pair[0]), str(pair[1]))
        return context


def _over_tls(services: Services, pki: Pki, client: ssl.SSLContext, messages: list[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        tls = mllp.server_tls(str(pki.server[0]), str(pki.server[1]), str(pki.ca))
        server = await start_mllp(services, feed_id=None, host="127.0.0.1", port=0, tls=tls)
        port = server.sockets[0].getsockname()[1]
        try:
            return await mllp.send("127.0.0.1", port, messages, tls=client, timeout=20)
        finally:
            server.close()
            await server.wait_closed()

    return run_to_end(run())


def _msa(frame: bytes) -> tuple[str, str]:
    parsed = hl7.parse(frame.decode("utf-8", "replace"))
    return str(parsed.segment("MSA")[1]), str(parsed.segment("MSA")[2])


def test_mutual_tls_names_the_feed_and_a_stranger_is_refused_and_dead_lettered(
    client: TestClient, services: Services, auth: Mint, tmp_path: Path
) -> None:
    """Registered certificate: AA, stored. Another CA-signed certificate: AR + ERR, a dead letter, nothing stored. No certificate: no handshake."""
    pki = Pki(tmp_path)
    hospital = Hospital(client, services, auth)
    services.feeds.add(
        "hopital-tls",
        name="Hôpital TLS",
        kind=FeedKind.HL7V2,
        classes=frozenset({"10", "11"}),
        certificate=certificate_fingerprint(pki.registered[0].read_bytes()),
    )
    cda = _cda()
    (ack,) = _over_tls(services, pki, pki.client(pki.registered), [_message(cda, "TLS-1")])
    assert _msa(ack) == ("AA", "TLS-1")
    assert len(hospital.documents()) == 1
    stored_by = hospital.documents()[0]["author"]
    assert any((a.get("identifier") or {}).get("value") == "hopital-tls" for a in stored_by)

    other = _cda().replace(b"<title>", b"<title>STRANGER ", 1)
    (refused,) = _over_tls(services, pki, pki.client(pki.stranger), [_message(other, "TLS-2")])
    assert _msa(refused) == ("AR", "TLS-2")
    err = hl7.parse(refused.decode()).segment("ERR")
    assert "not registered for any feed" in str(err)
    assert len(hospital.documents()) == 1
    letters = [letter for letter in services.hl7v2.dead_letters() if letter.control_id == "TLS-2"]
    assert [(letter.feed_id, letter.message_type) for letter in letters] == [(UNKNOWN_SENDER, "ORU^R01")]

    with pytest.raises((ssl.SSLError, ConnectionError, OSError, mllp.FrameError, StopAsyncIteration)):
        _over_tls(services, pki, pki.client(None), [_message(cda, "TLS-3")])
    assert len(hospital.documents()) == 1


def test_plain_tcp_needs_a_registered_sender_and_checks_it(
    client: TestClient, services: Services, auth: Mint
) -> None:
    """Plain TCP: a feed without a sender cannot get a listener; with one, another MSH-3^MSH-4 is AR, dead-lettered, not stored."""
    hospital = Hospital(client, services, auth)
    services.feeds.add("no-sender", name="Sans émetteur", kind=FeedKind.HL7V2, classes=frozenset({"10"}))

    async def refused_start() -> None:
        await start_mllp(services, feed_id="no-sender", host="127.0.0.1", port=0)

    with pytest.raises(ConfigurationError, match="cannot tell who sends"):
        run_to_end(refused_start())
    # The HTTP route authenticates by the feed's secret; MLLP, by the registered sender.
    impostor = _message(_cda(), "PLAIN-1", sender=SendingSystem(application="AUTRE-DPI"))

    async def send() -> list[bytes]:
        server = await start_mllp(services, feed_id="hopital-a", host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await mllp.send("127.0.0.1", port, [impostor])
        finally:
            server.close()
            await server.wait_closed()

    (ack,) = run_to_end(send())
    assert _msa(ack) == ("AR", "PLAIN-1")
    assert hospital.documents() == []
    assert any(letter.control_id == "PLAIN-1" for letter in services.hl7v2.dead_letters())


def test_cli_registers_a_feeds_certificate_and_a_device_feeds_measure_types(
    settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """carnet feeds add --certificate stores the certificate's SHA-256; a file that is no certificate is exit 2; kind measures takes LOINC codes."""
    monkeypatch.setenv("CARNET_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CARNET_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("CARNET_DATABASE_URL", settings.effective_database_url)
    pki = Pki(tmp_path)
    runner = CliRunner()
    base = ["feeds", "add", "dpi-a", "--name", "DPI A", "--kind", "hl7v2", "--classes", "10"]
    added = runner.invoke(cli, [*base, "--certificate", str(pki.registered[0])])
    assert added.exit_code == 0, added.output
    assert services.feeds.get("dpi-a").certificate == certificate_fingerprint(pki.registered[0].read_bytes())
    assert services.feeds.with_certificate(services.feeds.get("dpi-a").certificate).feed_id == "dpi-a"
    not_pem = runner.invoke(cli, [*base[:2], "dpi-b", *base[3:], "--certificate", str(pki.registered[1])])
    assert not_pem.exit_code == 2
    device = [
        "feeds",
        "add",
        "tensio",
        "--name",
        "Tensio",
        "--kind",
        "measures",
        "--classes",
        "85354-9,8867-4",
    ]
    assert runner.invoke(cli, device).exit_code == 0
    assert services.feeds.get("tensio").classes == frozenset({"85354-9", "8867-4"})
    wrong = ["feeds", "add", "tensio-2", "--name", "T", "--kind", "measures", "--classes", "10"]
    assert runner.invoke(cli, wrong).exit_code == 1
