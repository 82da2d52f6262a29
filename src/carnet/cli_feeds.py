"""``carnet feeds``: register, list, pause and resume the feeds (a composition root, like cli.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from carnet.cli_services import command_services
from carnet.crypto.certificates import certificate_fingerprint
from carnet.domain.errors import CarnetError, Conflict
from carnet.domain.feeds import FeedKind, FeedStatus, parse_classes
from carnet.domain.matrix import CLASS_CODES
from carnet.feeds.devices import measure_types
from carnet.services.feed_intake import HL7v2Intake
from carnet.services.feed_registry import FeedRegistry

feeds_app = typer.Typer(
    help="Feeds: the systems that write into records (hospitals, labs, insurer, pharmacies).",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()


@contextmanager
def _registry() -> Iterator[FeedRegistry]:
    """The feed registry of the configured database, its connections closed on the way out."""
    with command_services() as services:
        yield services.feeds


def _fail(exc: CarnetError) -> typer.Exit:
    console.print(f"[red]Error:[/red] {exc.message}")
    return typer.Exit(1)


@feeds_app.command("add")
def feeds_add(
    feed_id: Annotated[str, typer.Argument(help="The feed's id (lower-case letters, digits, '.', '-')")],
    name: Annotated[str, typer.Option(help="Who sends (shown to patients: 'Laboratoire Bio 77')")],
    kind: Annotated[FeedKind, typer.Option(help="What it sends")],
    classes: Annotated[
        str,
        typer.Option(
            help="DMP classCodes it may write, comma-separated (10,11); measure types (LOINC) for kind measures"
        ),
    ],
    sender: Annotated[
        str | None, typer.Option(help="HL7 v2 only: the MSH-3^MSH-4 its messages must carry")
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option(help="HL7 v2 over MLLP with TLS: the client certificate (PEM) the feed presents"),
    ] = None,
) -> None:
    """Register a feed; print its secret once (it authenticates the feed's HTTP requests)."""
    try:
        fingerprint = certificate_fingerprint(certificate.read_bytes()) if certificate else None
    except (OSError, ValueError) as exc:
        console.print(f"[red]Error:[/red] --certificate: not a readable PEM certificate ({exc}).")
        raise typer.Exit(2) from None
    try:
        with _registry() as registry:
            registered = registry.add(
                feed_id,
                name=name,
                kind=kind,
                classes=parse_classes(classes, measure_types() if kind is FeedKind.MEASURES else CLASS_CODES),
                sender=sender,
                certificate=fingerprint,
            )
    except CarnetError as exc:
        raise _fail(exc) from None
    feed = registered.feed
    console.print(f"Feed {feed.feed_id} registered for classes {','.join(sorted(feed.classes))}.")
    console.print("Its secret (shown once; keep it in the sending system):")
    out.print(registered.secret)


@feeds_app.command("list")
def feeds_list() -> None:
    """List the registered feeds: id, name, kind, classes, sender, status."""
    table = Table("id", "name", "kind", "classes", "sender", "status", "since")
    with _registry() as registry:
        feeds = registry.list()
    for feed in feeds:
        table.add_row(
            feed.feed_id,
            feed.name,
            feed.kind.value,
            ",".join(sorted(feed.classes)),
            feed.sender or "",
            feed.status.value,
            feed.created_at.date().isoformat(),
        )
    out.print(table)


@feeds_app.command("pause")
def feeds_pause(feed_id: Annotated[str, typer.Argument(help="The feed's id")]) -> None:
    """Pause a feed: it writes nothing until resumed (its messages are refused, not lost)."""
    try:
        with _registry() as registry:
            registry.set_status(feed_id, FeedStatus.PAUSED)
    except CarnetError as exc:
        raise _fail(exc) from None
    console.print(f"Feed {feed_id} paused.")


@feeds_app.command("resume")
def feeds_resume(feed_id: Annotated[str, typer.Argument(help="The feed's id")]) -> None:
    """Resume a paused feed."""
    try:
        with _registry() as registry:
            registry.set_status(feed_id, FeedStatus.ACTIVE)
    except CarnetError as exc:
        raise _fail(exc) from None
    console.print(f"Feed {feed_id} resumed.")


@feeds_app.command("mllp")
def feeds_mllp(
    feed_id: Annotated[
        str | None,
        typer.Argument(
            help="The registered HL7 v2 feed this listener takes messages for (over TLS: optional)"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (2575 is HL7's)")] = 2575,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Mutual TLS: the listener's certificate (PEM)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Mutual TLS: the listener's private key (PEM)")] = None,
    client_ca: Annotated[
        Path | None, typer.Option(help="Mutual TLS: the authorities of the senders' certificates (PEM)")
    ] = None,
) -> None:
    """Listen for HL7 v2 messages over MLLP; answer each with its ACK (and ZAM) until Ctrl-C.

    Over plain TCP the listener serves one feed whose sender (MSH-3^MSH-4) is registered; with
    --tls-cert, --tls-key and --client-ca each sender presents its certificate, which names its feed.
    """
    import asyncio

    from carnet.api.app import start_mllp
    from carnet.feeds.mllp import server_tls

    given = (tls_cert, tls_key, client_ca)
    if any(given) and not all(given):
        console.print("[red]Error:[/red] MLLP over TLS needs --tls-cert, --tls-key and --client-ca together.")
        raise typer.Exit(2)
    with command_services() as services:

        async def run() -> None:
            tls = server_tls(str(tls_cert), str(tls_key), str(client_ca)) if all(given) else None
            server = await start_mllp(services, feed_id=feed_id, host=host, port=port, tls=tls)
            who = f"feed {feed_id}" if feed_id else "the feeds of the client certificates"
            console.print(f"MLLP listener{' over TLS' if tls else ''} for {who} on {host}:{port}")
            async with server:
                await server.serve_forever()

        try:
            asyncio.run(run())
        except (CarnetError, OSError) as exc:
            message = exc.message if isinstance(exc, CarnetError) else str(exc)
            console.print(f"[red]Error:[/red] {message}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            pass


@contextmanager
def _intake() -> Iterator[HL7v2Intake]:
    """The HL7 v2 intake of the configured database, its connections closed on the way out."""
    with command_services() as services:
        yield services.hl7v2


@feeds_app.command("dead-letters")
def feeds_dead_letters(
    every: Annotated[bool, typer.Option("--all", help="Also the letters already replayed")] = False,
) -> None:
    """List the messages that could not be taken: id, feed, MSH-10, type, when, error (never content)."""
    with _intake() as intake:
        letters = intake.dead_letters(every=every)
    # One tab-separated line per letter, whole (ids are what replay takes), never wrapped.
    print("letter\tfeed\tcontrol id\ttype\treceived\tstatus\tattempts\terror")
    for letter in letters:
        fields = (
            letter.letter_id,
            letter.feed_id,
            letter.control_id,
            letter.message_type,
            letter.received_at.isoformat(timespec="seconds"),
            letter.status.value,
            str(letter.attempts),
            f"{letter.error_code} {letter.error}",
        )
        print("\t".join(fields))
    console.print(f"{len(letters)} dead letter(s).")


@feeds_app.command("replay")
def feeds_replay(
    letter_id: Annotated[str | None, typer.Argument(help="The dead letter to take again")] = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every open dead letter, oldest first")] = False,
) -> None:
    """Take dead letters again after a fix; each one taken is marked replayed, the others stay open."""
    if (letter_id is None) == (not every):
        console.print("[red]Error:[/red] name one dead letter, or pass --all.")
        raise typer.Exit(2)
    taken = failed = 0
    with _intake() as intake:
        ids = [letter_id] if letter_id else [letter.letter_id for letter in intake.dead_letters()]
        for one in ids:
            try:
                receipt = intake.replay(one)
            except CarnetError as exc:
                raise _fail(exc) from None
            if receipt.error is None:
                taken += 1
                console.print(f"{one}: taken ({receipt.outcome}).")
            else:
                failed += 1
                console.print(f"{one}: still refused: {receipt.error.hl7_code} {receipt.error.message}")
    console.print(f"{taken} taken, {failed} still open.")
    if failed:
        raise typer.Exit(1)


def register_demo_feeds(registry: FeedRegistry) -> None:
    """Register a lab (HL7 v2) and the insurer (CNAM-HR) for the demo, once; print their secrets."""
    for feed_id, name, kind, classes, sender in (
        ("demo-lab", "Laboratoire de démonstration", FeedKind.HL7V2, {"10"}, "DPI-HOPITAL^HOPITAL-A"),
        ("demo-cnam", "Assurance Maladie (démonstration)", FeedKind.CNAM, {"60"}, None),
    ):
        try:
            made = registry.add(feed_id, name=name, kind=kind, classes=frozenset(classes), sender=sender)
        except Conflict:
            continue
        console.print(f"Demo feed {feed_id} registered; its secret: {made.secret}")


def write_hl7v2(folder: Path, index: int, bundle: Mapping[str, Any]) -> None:
    """Write one generated patient's CDA documents as ORU/MDM messages (``carnet generate --hl7v2``)."""
    from carnet.synthetic.hl7v2 import messages_for

    sent = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=index)
    for name, message in messages_for(bundle, sent_at=sent, prefix=f"P{index:05d}"):
        (folder / f"{name}.hl7").write_bytes(message)
