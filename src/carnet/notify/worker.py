"""The delivery worker: claims due outbox messages and sends them by e-mail over SMTP.

Guarantees (see docs/notifications.md):

- **At least once.** A message is marked ``delivered`` only after the mail server accepted it
  (``DATA`` answered 250). A worker that dies between the acceptance and that mark leaves the
  message ``sending`` under a lease; when the lease expires another pass sends it again, with the
  same ``Message-ID``.
- **Nothing lost.** Failed attempts are retried with exponential backoff
  (``services.notifications.backoff``); a message given up is kept as ``failed``, one whose
  record was erased as ``dropped``.
- **No database transaction is held while talking to the mail server**: claiming, and each
  message's outcome, are short transactions of their own.
- Logs name the message id and the kind of error, never an address, a name or a server reply
  (which may echo the address).

:meth:`DeliveryWorker.run` loops until its ``threading.Event`` is set; :meth:`start` runs it in a
daemon thread for ``carnet serve``.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from carnet.domain.errors import EnvelopeError, KeyProviderError, RecordShredded
from carnet.notify.messages import render
from carnet.services.notifications import (
    LEASE,
    Delivery,
    NotificationStores,
    Notifier,
    OutboxMessage,
)
from carnet.settings import Settings

log = logging.getLogger("carnet.notify")

#: Seconds before a connection attempt or an SMTP command is given up.
SMTP_TIMEOUT = 30.0

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Unreachable(Exception):
    """The mail server could not be reached or refused the session (every message must wait)."""


def _smtp_error(exc: Exception) -> tuple[str, bool]:
    """Describe an SMTP failure without personal data; tell whether it is permanent (5xx)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        permanent = bool(codes) and all(500 <= code < 600 for code in codes)
        return f"The mail server refused the recipient (SMTP {', '.join(map(str, codes))}).", permanent
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        permanent = 500 <= code < 600
        return f"The mail server refused the message (SMTP {code}, {type(exc).__name__}).", permanent
    return f"The message could not be sent ({type(exc).__name__}).", False


class DeliveryWorker:
    """Delivers the outbox by e-mail: ``run_once`` for one pass, ``run`` or ``start`` to loop."""

    def __init__(
        self,
        *,
        store: NotificationStores,
        notifier: Notifier,
        settings: Settings,
        clock: Clock = _utc_now,
        batch: int = 20,
        lease: timedelta = LEASE,
        timeout: float = SMTP_TIMEOUT,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self._batch = batch
        self._lease = lease
        self._timeout = timeout

    # -- one pass ---------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Claim a batch of due messages, send them, record each outcome; return how many were delivered.

        With no SMTP host configured nothing is claimed: the messages wait in the outbox.
        """
        return self._pass(now or self._clock())[1]

    def _pass(self, now: datetime) -> tuple[int, int]:
        """Run one pass; return ``(claimed, delivered)``."""
        if not self._settings.smtp_host:
            return 0, 0
        ready: list[tuple[OutboxMessage, Delivery]] = []
        with self._store.session(write=True) as session:
            claimed = session.claim_outbox(now, lease=self._lease, limit=self._batch)
            for message in claimed:
                try:
                    ready.append((message, self._notifier.open_message(session, message)))
                except RecordShredded:
                    session.drop_outbox(
                        message.patient_id,
                        message.message_id,
                        "The record was erased; the notice is never sent.",
                    )
                    log.info("notice %s dropped: its record was erased", message.message_id)
                except KeyProviderError:
                    session.retry_outbox(
                        message.patient_id,
                        message.message_id,
                        now,
                        "The record's key could not be unwrapped.",
                    )
                    log.warning(
                        "notice %s: the record key could not be unwrapped; retry later", message.message_id
                    )
                except (EnvelopeError, KeyError, TypeError, ValueError):
                    session.retry_outbox(
                        message.patient_id,
                        message.message_id,
                        now,
                        "The sealed notice could not be opened.",
                        permanent=True,
                    )
                    log.error("notice %s: its sealed payload does not open; given up", message.message_id)
        return len(claimed), self._send(ready, now)

    def _send(self, ready: list[tuple[OutboxMessage, Delivery]], now: datetime) -> int:
        """Send the opened messages over one SMTP session; return how many the server accepted."""
        delivered = 0
        connection: smtplib.SMTP | None = None
        try:
            for index, (message, delivery) in enumerate(ready):
                if delivery.to is None:  # never claimed in practice: such rows are ``no-address``
                    self._retry(message, now, "The notice has no address.", permanent=True)
                    continue
                email = render(
                    delivery,
                    sender=self._settings.smtp_from,
                    base_url=self._settings.base_url,
                    sent_at=self._clock(),
                )
                try:
                    if connection is None:
                        connection = self._connect()
                    connection.send_message(email, from_addr=self._settings.smtp_from, to_addrs=[delivery.to])
                except _Unreachable as exc:
                    # Nothing can go out now: every remaining message waits for its backoff.
                    connection = None
                    for waiting, _ in ready[index:]:
                        self._retry(waiting, now, str(exc))
                    log.warning("mail server unreachable (%s); %d notice(s) wait", exc, len(ready) - index)
                    break
                except smtplib.SMTPServerDisconnected as exc:
                    self._broken(connection, message, now, exc)
                    connection = None
                except smtplib.SMTPException as exc:  # a refusal; the session itself is still usable
                    error, permanent = _smtp_error(exc)
                    self._retry(message, now, error, permanent=permanent)
                    log.warning(
                        "notice %s: %s (%s)",
                        message.message_id,
                        "refused, given up" if permanent else "refused for now, retry later",
                        type(exc).__name__,
                    )
                except OSError as exc:  # after SMTPException, which is an OSError too
                    self._broken(connection, message, now, exc)
                    connection = None
                else:
                    # Only now has the server taken responsibility for the message.
                    with self._store.session(write=True) as session:
                        session.mark_delivered(message.patient_id, message.message_id, now)
                    delivered += 1
        finally:
            if connection is not None:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    connection.close()
        return delivered

    def _broken(
        self, connection: smtplib.SMTP | None, message: OutboxMessage, now: datetime, exc: Exception
    ) -> None:
        """Close a broken session and schedule the message again; the next message reconnects.

        The server may have accepted the message just before the break: sending it again is the
        price of never losing one (same ``Message-ID``).
        """
        if connection is not None:
            connection.close()
        self._retry(message, now, f"The connection to the mail server broke ({type(exc).__name__}).")
        log.warning("notice %s: connection broke (%s); retry later", message.message_id, type(exc).__name__)

    def _retry(self, message: OutboxMessage, now: datetime, error: str, *, permanent: bool = False) -> None:
        with self._store.session(write=True) as session:
            session.retry_outbox(message.patient_id, message.message_id, now, error, permanent=permanent)

    def _connect(self) -> smtplib.SMTP:
        """Open an SMTP session as configured (plain, STARTTLS or implicit TLS; login if a user is set).

        Raises:
            _Unreachable: the server cannot be reached, refuses the session, TLS or the login.
        """
        settings = self._settings
        host = settings.smtp_host or ""
        connection: smtplib.SMTP | None = None
        try:
            if settings.smtp_security == "tls":
                connection = smtplib.SMTP_SSL(
                    host, settings.smtp_port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                connection = smtplib.SMTP(host, settings.smtp_port, timeout=self._timeout)
                if settings.smtp_security == "starttls":
                    connection.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                connection.login(settings.smtp_user, settings.smtp_password or "")
        except (smtplib.SMTPException, OSError) as exc:
            if connection is not None:
                connection.close()
            raise _Unreachable(
                f"A session with the mail server could not be opened ({type(exc).__name__})."
            ) from None
        return connection

    # -- looping ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set: a pass every ``worker_seconds``, at once while batches are full."""
        if not self._settings.smtp_host:
            log.warning("CARNET_SMTP_HOST is not set: notices wait in the outbox")
        while not stop.is_set():
            try:
                claimed, _ = self._pass(self._clock())
            except Exception as exc:  # a database hiccup must not end the loop; the next pass retries
                log.error("delivery pass failed (%s); retrying", type(exc).__name__)
                claimed = 0
            if claimed < self._batch:
                stop.wait(self._settings.worker_seconds)

    def start(self) -> Callable[[], None]:
        """Run :meth:`run` in a daemon thread; return the function that stops it and waits for it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="carnet-notify", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=self._timeout + 5)

        return halt
