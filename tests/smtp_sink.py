"""A real SMTP server in-process for the tests (aiosmtpd), and a free port to put it on.

Shared by the integration tests and the browser tests (whose server runs as a subprocess).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    """Return a TCP port nobody listens on (aiosmtpd cannot be given port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Sink:
    """An aiosmtpd handler keeping every accepted message; it refuses the addresses in ``refuse``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()
        self.authenticated: list[bool] = []

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept a recipient unless it is to be refused."""
        if address in self.refuse:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message."""
        content = envelope.original_content or b""
        self.authenticated.append(bool(session.authenticated))
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        """The received messages, parsed."""
        return [
            message_from_bytes(raw, _class=EmailMessage, policy=policy.default)  # type: ignore[misc]
            for _, _, raw in self.received
        ]


class Mailbox:
    """A real SMTP server on 127.0.0.1, started and stopped at will on one port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sink = Sink()
        self._controller: Controller | None = None

    def start(self, *, login: tuple[str, str] | None = None) -> None:
        """Listen; with ``login``, every session must authenticate with that user and password."""
        options: dict[str, Any] = {}
        if login is not None:
            expected = (login[0].encode(), login[1].encode())

            def authenticate(
                server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                given = (data.login, data.password) if isinstance(data, LoginPassword) else None
                return AuthResult(success=given == expected, handled=False)

            # Plain-text AUTH on the loopback test server only; production uses starttls or tls.
            options = {"authenticator": authenticate, "auth_require_tls": False}
        self._controller = Controller(self.sink, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, predicate: Callable[[EmailMessage], bool], timeout: float = 20.0) -> EmailMessage:
        """Return the first received message for which ``predicate`` holds, waiting up to ``timeout``.

        Raises:
            AssertionError: none arrived in time (the subjects received are named).
        """
        deadline = time.monotonic() + timeout
        while True:
            for message in self.sink.messages():
                if predicate(message):
                    return message
            if time.monotonic() >= deadline:
                subjects = [str(m["Subject"]) for m in self.sink.messages()]
                raise AssertionError(f"no matching e-mail arrived within {timeout} s; received: {subjects}")
            time.sleep(0.2)
