"""The ``carnet`` command: each subcommand calls one service (a composition root)."""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from carnet.cli_apps import apps_app
from carnet.cli_feeds import feeds_app, register_demo_feeds, write_hl7v2
from carnet.cli_represent import represent_app
from carnet.cli_research import research_app
from carnet.domain.errors import CarnetError
from carnet.domain.principal import ActorKind, Principal
from carnet.settings import Settings, load

app = typer.Typer(help="Carnet: a shared medical record the patient controls.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Key management (administrators).", no_args_is_help=True)
patient_app = typer.Typer(help="Whole-record operations (administrators).", no_args_is_help=True)
audit_app = typer.Typer(help="The access journal: verify it, fetch its checkpoints.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(patient_app, name="patient")
app.add_typer(audit_app, name="audit")
witness_app = typer.Typer(
    help="A witness of Carnet journals (C2SP tlog-witness), run apart from Carnet.", no_args_is_help=True
)
app.add_typer(witness_app, name="witness")
app.add_typer(feeds_app, name="feeds")
app.add_typer(research_app, name="research")
patient_app.add_typer(represent_app, name="represent")  # carnet/cli_represent.py
app.add_typer(apps_app, name="apps")  # carnet apps add/list/remove (carnet/cli_apps.py)

#: The server's logging (the access log of ``carnet.api`` included), in every worker process.
SERVER_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
}
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load(os.environ)
    except CarnetError as exc:
        console.print(f"[red]Configuration error:[/red] {exc.message}")
        raise typer.Exit(2) from None


def _operator() -> Principal:
    return Principal(kind=ActorKind.ADMIN, subject=f"cli:{os.environ.get('USER', 'operator')}")


def _fail(exc: CarnetError) -> typer.Exit:
    console.print(f"[red]Error:[/red] {exc.message}")
    return typer.Exit(1)


@app.command()
def serve(
    workers: Annotated[int, typer.Option(help="Worker processes (one per core for throughput)")] = 1,
) -> None:
    """Serve the FHIR API (and, later, the portals) with uvicorn."""
    import uvicorn

    from carnet.api.app import build_services, create_app

    settings = _settings()
    logging.config.dictConfig(SERVER_LOGGING)
    if workers > 1:
        # Migrate once here; each worker process then builds its own app from the environment,
        # and its logging from SERVER_LOGGING (uvicorn applies log_config in every worker: with
        # none, a worker's root logger stayed at WARNING and the access log was lost).
        build_services(settings).store.engine.dispose()
        uvicorn.run(
            "carnet.asgi:app",
            host=settings.host,
            port=settings.port,
            workers=workers,
            access_log=False,
            log_config=SERVER_LOGGING,
        )
        return
    from carnet.demo import demo_people
    from carnet.heap import settle

    people = demo_people() if settings.development_issuer_enabled else ()
    application = create_app(settings, demo_people=people)
    settle()  # the application is built: its objects leave the collector's sight (carnet.heap)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Make one delivery pass, then exit")] = False,
) -> None:
    """Deliver the notification outbox by e-mail (SMTP) and sign journal checkpoints until Ctrl-C; `--once` for one pass."""
    import signal
    import threading

    from carnet.api.app import build_services, new_id, utc_now
    from carnet.notify.worker import DeliveryWorker
    from carnet.services.notifications import Notifier

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    services = build_services(settings)
    notifier = Notifier(vault=services.records.vault, clock=utc_now, new_id=new_id)
    delivery = DeliveryWorker(store=services.store, notifier=notifier, settings=settings)
    if once:
        if not settings.smtp_host:
            console.print("CARNET_SMTP_HOST is not set: notices wait in the outbox.")
        delivered = delivery.run_once()
        services.journal.issue_checkpoints()
        with services.store.session() as session:
            counts = session.count_outbox()
        summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
        console.print(f"Delivered {delivered} notice(s); outbox: {summary or 'empty'}.")
        return
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()  # the current pass finishes; nothing is cut off mid-send

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    console.print(
        f"Delivering notices every {settings.worker_seconds} s and signing journal checkpoints every "
        f"{settings.checkpoint_seconds} s; Ctrl-C stops."
    )
    checkpointer = threading.Thread(
        target=services.journal.run, args=(stop, float(settings.checkpoint_seconds)), daemon=True
    )
    checkpointer.start()
    delivery.run(stop)
    checkpointer.join(timeout=10)
    console.print("Stopped.")


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="Synthetic patients to seed on first run")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population")] = 2026,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve once seeded")] = True,
) -> None:
    """Seed synthetic French patients (first run only) and serve on http://127.0.0.1:8000."""
    import uvicorn

    from carnet.api.app import build_services, create_app
    from carnet.api.auth import issue_token
    from carnet.demo import demo_people, seed_population
    from carnet.web.identities import demo_professionals

    settings = _settings()
    services = build_services(settings)
    with Progress(
        TextColumn("Seeding synthetic patients"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("seed", total=patients)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        seeded = seed_population(services.records, patients=patients, seed=seed, progress=progress)
    register_demo_feeds(services.feeds)
    now = datetime.now(UTC)
    first = seeded[0]
    patient_token = issue_token(
        settings,
        {
            "kind": "patient",
            "sub": f"patient:{first.patient_id}",
            "patient": first.patient_id,
            "name": first.display,
        },
        now=now,
        lifetime=timedelta(hours=12),
    )
    base = settings.base_url
    typer.echo(f"\nCarnet demo: {len(seeded)} synthetic patients in {settings.data_dir}")
    site = base.removesuffix("/fhir")
    typer.echo(f"Portals: {site}/login — sign in as a patient (e.g. {first.display}) or as a professional")
    typer.echo("  of the demo directory (patient portal /patient/, professional portal /pro/).")
    typer.echo(f"FHIR API: {base}/metadata")
    typer.echo(f"Patient {first.display} (INS {first.ins_value}), record Patient/{first.patient_id}.")
    typer.echo("Read the record as that patient:")
    typer.echo(
        f"  curl -H 'Authorization: Bearer {patient_token}' {base}/Patient/{first.patient_id}/\\$everything"
    )
    typer.echo("Mint other tokens with, e.g.:")
    typer.echo(f"  .venv/bin/carnet token --kind patient --patient {seeded[-1].patient_id}")
    # A professional of the demo directory (a general practitioner if there is one), so that the
    # printed token names someone the portals and the patients' choices know.
    directory = demo_professionals(services.records)
    doctor = next((p for p in directory if p.specialty == "SM54"), None) or next(iter(directory), None)
    if doctor is not None:
        typer.echo(
            f"  .venv/bin/carnet token --kind professional --idnps {doctor.idnps}"
            + (f" --profession {doctor.profession}" if doctor.profession else "")
            + (f" --specialty {doctor.specialty}" if doctor.specialty else "")
            + f" --name '{doctor.display}'"
        )
    typer.echo("(a professional reads a record once the patient authorised them, or by break-glass)\n")
    if serve_after:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        app_ = create_app(settings, services, demo_people=demo_people(seed))
        uvicorn.run(app_, host=settings.host, port=settings.port, access_log=False, log_config=None)


@app.command()
def generate(
    patients: Annotated[int, typer.Option(help="How many synthetic patients")] = 10,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bytes")] = 2026,
    out: Annotated[Path, typer.Option(help="Folder for one transaction Bundle per patient")] = Path(
        "var/synthetic"
    ),
    documents: Annotated[int, typer.Option(help="Documents per patient (one per DMP class in turn)")] = 8,
    hl7v2: Annotated[
        bool, typer.Option("--hl7v2", help="Also write each CDA as an ORU/MDM message (hl7v2/ folder)")
    ] = False,
    cnam_hr: Annotated[
        bool,
        typer.Option(
            "--cnam-hr", help="Write the reimbursement history as a structured CNAM-HR CDA of 24 months"
        ),
    ] = False,
    dispensations: Annotated[
        bool,
        typer.Option(
            "--dispensations", help="Write the pharmacy's dispensation as a structured CDA (coded medicines)"
        ),
    ] = False,
) -> None:
    """Write synthetic French patients as FHIR R4 transaction Bundles (deterministic for a seed)."""
    from carnet.synthetic import generate_population

    out.mkdir(parents=True, exist_ok=True)
    if hl7v2:
        (out / "hl7v2").mkdir(exist_ok=True)
    with Progress(TextColumn("Generating"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("generate", total=patients)
        for index, item in enumerate(
            generate_population(
                patients, seed, documents_per_patient=documents, cnam_hr=cnam_hr, dispensations=dispensations
            )
        ):
            (out / f"patient-{index:05d}.json").write_bytes(item.to_json())
            if hl7v2:
                write_hl7v2(out / "hl7v2", index, item.bundle)
            bar.update(task, completed=index + 1)
    console.print(f"{patients} patients written to {out} (seed {seed}).")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest migration."""
    from carnet.store.engine import make_engine, upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.effective_database_url)
    try:
        placed = upgrade(engine, settings.database_distributed)
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    if placed:
        console.print(f"Distributed on Citus: {', '.join(placed)}.")
    console.print("Database schema is up to date.")


@db_app.command("distribute")
def db_distribute() -> None:
    """Convert a single-node store to Citus: shard every table by record (rows are moved to the workers)."""
    from carnet.store.distribution import distribute
    from carnet.store.engine import make_engine, upgrade

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine, "none")
        with engine.begin() as connection:
            placed = distribute(connection)
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    console.print(f"Distributed on Citus: {', '.join(placed) or 'nothing left to distribute'}.")


@db_app.command("restore-point")
def db_restore_point(
    name: Annotated[str, typer.Argument(help="The restore point's name, e.g. nightly-2026-12-06")],
) -> None:
    """On Citus: mark one instant on every node, to restore the whole cluster to (docs/operations.md)."""
    from carnet.store.distribution import restore_point
    from carnet.store.engine import make_engine

    engine = make_engine(_settings().effective_database_url)
    try:
        with engine.begin() as connection:
            position = restore_point(connection, name)
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    typer.echo(f"restore point {name} created on every node (coordinator WAL {position})")


@app.command()
def token(
    kind: Annotated[
        str, typer.Option(help="patient, professional, representative, feed, admin, … (an actor kind)")
    ],
    sub: Annotated[
        str | None, typer.Option(help="Subject id (default: derived from the other options)")
    ] = None,
    patient: Annotated[str | None, typer.Option(help="Record id the token is for (patients)")] = None,
    identifier: Annotated[str | None, typer.Option(help="Identifier system|value, e.g. the INS")] = None,
    profession: Annotated[str | None, typer.Option(help="Profession code (G15), professionals")] = None,
    specialty: Annotated[str | None, typer.Option(help="Specialty code (R38), professionals")] = None,
    idnps: Annotated[str | None, typer.Option(help="National professional id (idNat_PS, 8 + RPPS)")] = None,
    samu: Annotated[bool, typer.Option("--samu", help="SAMU regulating physician")] = False,
    occupational: Annotated[
        bool, typer.Option("--occupational", help="Occupational physician (médecin du travail)")
    ] = False,
    represents: Annotated[
        list[str] | None,
        typer.Option(help="Record id a legal representative acts for (repeat for several)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    feed: Annotated[str | None, typer.Option(help="Registered feed id (feeds, see carnet feeds add)")] = None,
    feed_category: Annotated[
        list[str] | None,
        typer.Option(help="DMP classCode the feed writes (repeat); the server uses the registered ones"),
    ] = None,
    hours: Annotated[int, typer.Option(help="Lifetime in hours")] = 12,
) -> None:
    """Print a development bearer token; stderr says what key signs it and why a server would refuse it."""
    from carnet.api.auth import issue_token
    from carnet.crypto.signing import DEV_ISSUER_FILE

    try:
        actor_kind = ActorKind(kind)
    except ValueError:
        console.print(f"[red]Error:[/red] --kind must be one of {', '.join(k.value for k in ActorKind)}.")
        raise typer.Exit(2) from None
    claims: dict[str, Any] = {
        "kind": actor_kind.value,
        "sub": sub or f"{kind}:{patient or identifier or idnps or feed or 'demo'}",
    }
    given: dict[str, Any] = {"patient": patient, "identifier": identifier, "profession": profession}
    given |= {"specialty": specialty}
    given |= {"idnps": idnps, "name": name, "feed": feed, "samu": samu, "occupational": occupational}
    given |= {"represents": list(represents or []), "feed_categories": list(feed_category or [])}
    claims.update({claim: value for claim, value in given.items() if value})
    settings = _settings()
    problems = {
        ActorKind.FEED: None if feed else "a feed's token must name its registered feed (--feed)",
        ActorKind.REPRESENTATIVE: None
        if represents
        else "a representative's token lists the records (--represents)",
        ActorKind.PROFESSIONAL: None if idnps else "a professional's token carries the idNat_PS (--idnps)",
    }
    problem = problems.get(actor_kind)
    if problem is not None:
        console.print(
            f"[yellow]Warning:[/yellow] the server will refuse this token: {problem}.", soft_wrap=True
        )
    key = settings.key_dir / DEV_ISSUER_FILE
    if settings.development_issuer_enabled and not key.exists():
        console.print(
            f"[yellow]Warning:[/yellow] no development issuer key in {settings.key_dir.resolve()}; a new one is "
            "created now. A server already running with another key (another CARNET_KEY_DIR, or started "
            "before this key existed) refuses this token: use the server's CARNET_KEY_DIR.",
            soft_wrap=True,
        )
    try:
        printed = issue_token(settings, claims, now=datetime.now(UTC), lifetime=timedelta(hours=hours))
    except CarnetError as exc:
        raise _fail(exc) from None
    print(printed)
    console.print(
        f"Signed with {key.resolve()}: accepted by a server in development mode with "
        f"CARNET_KEY_DIR={settings.key_dir.resolve()}, for {hours} h.",
        highlight=False,
        soft_wrap=True,
    )


@keys_app.command("rotate")
def keys_rotate(batch: Annotated[int, typer.Option(help="Keys re-wrapped per transaction")] = 200) -> None:
    """Re-wrap every patient key under a new key-encryption key (resumable if interrupted)."""
    from carnet.api.app import build_services

    services = build_services(_settings())
    with Progress(
        TextColumn("Re-wrapping patient keys"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("rotate", total=None)
        logged = 0

        def progress(done: int, total: int) -> None:
            nonlocal logged
            bar.update(task, completed=done, total=total)
            # Not a terminal (a log, a cron job): a line at each tenth of the way instead of a bar.
            step = done * 10 // max(total, 1)
            if not console.is_terminal and step > logged:
                logged = step
                console.print(f"Re-wrapping patient keys: {done}/{total}")
                console.file.flush()

        try:
            report = services.key_service.rotate(_operator(), batch=batch, progress=progress)
        except CarnetError as exc:
            raise _fail(exc) from None
        finally:
            services.store.engine.dispose()
    verb = "Resumed and finished" if report.resumed else "Finished"
    console.print(
        f"{verb}: {report.rewrapped} keys now under {report.kek_id}; retired {len(report.retired)} old KEK(s)."
    )


@patient_app.command("shred")
def patient_shred(
    patient_id: Annotated[str, typer.Argument(help="The record (Patient id) to erase")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Destroy one patient's key: the whole record becomes unreadable, everywhere, for good."""
    from carnet.api.app import build_services

    if not yes and not typer.confirm(f"Erase Patient/{patient_id} for good? This cannot be undone"):
        raise typer.Exit(1)
    services = build_services(_settings())
    try:
        services.key_service.shred(_operator(), patient_id)
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        services.store.engine.dispose()
    console.print(f"Patient/{patient_id}: key destroyed; the record can no longer be opened.")


@patient_app.command("enrol")
def patient_enrol(
    ins: Annotated[str, typer.Option(help="The patient's INS (13 digits), checked on an identity document")],
) -> None:
    """Print a one-time enrolment code (valid 3 days) with which the patient creates a passkey."""
    from carnet.api.app import build_services
    from carnet.web.oidc_patient_login import INS_SYSTEMS

    services = build_services(_settings())
    try:
        value = ins.replace(" ", "")[:13]
        found = next(
            (p for p in (services.records.record_with(s, value) for s in INS_SYSTEMS) if p is not None), None
        )
        if not value.isdigit() or found is None:
            console.print("[red]No record has this INS.[/red] Check the 13 digits on the Carte Vitale.")
            raise typer.Exit(2)
        code = services.patient_accounts.issue_enrolment(found)
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        services.store.engine.dispose()
    typer.echo(f"Patient/{found}: enrolment code {code} (one use, 3 days; give it to the patient only)")


def _default_backup(settings: Settings, suffix: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir.parent / "backups" / f"carnet-{stamp}.{suffix}"


@app.command()
def backup(
    out: Annotated[
        Path | None, typer.Option(help="Backup file to create (default: var/backups/carnet-<time>)")
    ] = None,
) -> None:
    """Back the database up while it serves (keys are not included: see `carnet keys backup`)."""
    from carnet.store.backup import backup_database

    settings = _settings()
    url = settings.effective_database_url
    path = out or _default_backup(settings, "sqlite3" if url.startswith("sqlite") else "pgdump")
    with console.status("Backing up") as status:
        try:
            report = backup_database(url, path, step=status.update)
        except CarnetError as exc:
            raise _fail(exc) from None
    console.print(f"Database backup written to {report.path} ({report.size:,} bytes, {report.kind}).")
    console.print("Back the key directory up apart with `carnet keys backup` (see docs/operations.md).")


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A backup file made by `carnet backup`")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Replace the database by a backup (servers stopped), then re-apply the erasures made since."""
    from carnet.api.app import build_services
    from carnet.store.backup import restore_database

    settings = _settings()
    if not yes and not typer.confirm(f"Replace the database by {source}? Stop every Carnet server first"):
        raise typer.Exit(1)
    with console.status("Restoring") as status:
        try:
            restore_database(settings.effective_database_url, source, step=status.update)
        except CarnetError as exc:
            raise _fail(exc) from None
    services = build_services(settings)  # applies the migrations newer than the backup
    with Progress(
        TextColumn("Re-applying erasures"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        task = bar.add_task("erasures", total=None)
        try:
            erased = services.key_service.reapply_erasures(
                _operator(), progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        except CarnetError as exc:
            raise _fail(exc) from None
    services.store.engine.dispose()
    console.print(f"Restored {source}; {erased} record(s) shredded since the backup erased again.")
    console.print("Check the journal now: `carnet audit verify`.")


@keys_app.command("backup")
def keys_backup(
    out: Annotated[Path, typer.Option(help="Archive to create (.tar.gz), outside the key directory")],
) -> None:
    """Archive the key directory (KEKs, erasure shares, signing keys) for a separate key backup."""
    from carnet.store.backup import backup_key_directory

    settings = _settings()
    try:
        report = backup_key_directory(settings.key_dir, out)
    except CarnetError as exc:
        raise _fail(exc) from None
    console.print(f"Key backup written to {report.path} ({report.size:,} bytes).")
    console.print("Keep it apart from database backups and for a bounded time (docs/operations.md).")


def _verifier_key(key: str | None, settings: Settings) -> str:
    from carnet.audit.signer import VERIFIER_FILE

    if key is None:
        path = settings.key_dir / VERIFIER_FILE
        if not path.exists():
            console.print(f"[red]No verifier key:[/red] give --key, or keep {path} readable.")
            raise typer.Exit(2)
        return path.read_text(encoding="ascii").strip()
    candidate = Path(key)
    return candidate.read_text(encoding="ascii").strip() if candidate.is_file() else key.strip()


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="A signed checkpoint kept apart (one per shard); default: the latest stored"),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="The checkpoints' verifier key, or a file holding it")
    ] = None,
    database: Annotated[str | None, typer.Option(help="Database URL; default: the configured one")] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask the witnesses; check only the cosignatures stored")
    ] = False,
) -> None:
    """Recompute the whole journal and check it against signed checkpoints and the witnesses.

    Exit 0: every entry verified (and, with CARNET_WITNESSES, the head is witnessed). Exit 1:
    an entry is missing, altered, out of place or forged (the first bad index is named), a
    tree node is bad, or the journal is not witnessed. Exit 2: a checkpoint does not verify.
    """
    from carnet.audit.checkpoint import open_note
    from carnet.audit.verify import verify_journal
    from carnet.audit.witness_client import HTTPWitness
    from carnet.domain.errors import AuditChainError
    from carnet.store.engine import make_engine
    from carnet.store.repository import SQLStore

    settings = _settings()
    verifier = _verifier_key(key, settings)
    base = settings.journal_origin
    given: dict[int, bytes] = {}
    for path in checkpoint or []:
        note = path.read_bytes()
        try:
            origin = open_note(note, verifier).split("\n", 1)[0]
        except AuditChainError as exc:
            console.print(f"[red]{path}:[/red] {exc.message}")
            raise typer.Exit(2) from None
        suffix = origin.removeprefix(base).removeprefix("/")
        given[int(suffix) if suffix.isdigit() else 0] = note
    engine = make_engine(database or settings.effective_database_url)
    store = SQLStore(engine)
    with (
        Progress(TextColumn("{task.description}"), MofNCompleteColumn(), console=console) as bar,
        store.session() as session,
    ):
        task = bar.add_task("entries", total=None)
        try:
            reports = verify_journal(
                session,
                verifier,
                base,
                checkpoints=given,
                progress=lambda n: bar.advance(task, n),
                witnesses=[HTTPWitness(url, witness_key) for url, witness_key in settings.witnesses],
                quorum=settings.effective_witness_quorum,
                ask_witnesses=not offline,
                now=datetime.now(UTC),
            )
        except AuditChainError as exc:
            console.print(f"[red]Checkpoint error:[/red] {exc.message}")
            raise typer.Exit(2) from None
    engine.dispose()
    failed = False
    for report in reports:
        verdict = report.verdict
        witnessing = report.witnessing
        if witnessing is not None:
            for problem in witnessing.problems:
                typer.echo(f"shard {report.shard}: NOT WITNESSED: {problem}")
            if witnessing.size is not None:
                typer.echo(
                    f"shard {report.shard}: checkpoint {witnessing.size} witnessed by "
                    f"{len(witnessing.cosigners)} (quorum {witnessing.quorum}): {', '.join(witnessing.cosigners)}"
                )
            failed = failed or bool(witnessing.problems)
        if verdict.ok:
            extra = f"; {verdict.unverified} newer entries await a checkpoint" if verdict.unverified else ""
            typer.echo(
                f"shard {report.shard}: {verdict.checked} entries verified (checkpoint size {report.checkpoint.size}){extra}"
            )
        elif verdict.bad_node is not None:
            failed = True
            level, index = verdict.bad_node
            first, last = index << level, ((index + 1) << level) - 1
            typer.echo(
                f"shard {report.shard}: BAD TREE NODE {level}/{index} (entries {first}-{last}): {verdict.problem}"
            )
        else:
            failed = True
            where = "" if verdict.exact else " (at or after)"
            typer.echo(f"shard {report.shard}: FIRST BAD ENTRY {verdict.first_bad}{where}: {verdict.problem}")
    raise typer.Exit(1 if failed else 0)


@audit_app.command("checkpoint")
def audit_checkpoint(shard: Annotated[int, typer.Option(help="Journal shard")] = 0) -> None:
    """Sign a checkpoint now if the journal grew, and print the latest one (keep it apart)."""
    from carnet.api.app import build_services

    services = build_services(_settings())
    try:
        typer.echo(services.journal.checkpoint(shard).decode(), nl=False)
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        services.store.engine.dispose()


_WITNESS_DIR = Annotated[Path, typer.Option("--dir", help="The witness's directory (key and state)")]


@witness_app.command("init")
def witness_init(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.association.example/carnet")],
    directory: _WITNESS_DIR = Path("var/witness"),
) -> None:
    """Create a witness's key and state; print its verifier key (give it to the log's operator)."""
    from carnet.witness.state import init_witness

    try:
        typer.echo(init_witness(directory, name))
    except CarnetError as exc:
        raise _fail(exc) from None


@witness_app.command("trust")
def witness_trust(
    key: Annotated[
        str, typer.Argument(help="The journal's verifier key (GET /journal/verifier-key), or a file")
    ],
    origin: Annotated[
        list[str] | None,
        typer.Option(help="A checkpoint origin it signs (default: the key's name); repeat for shards"),
    ] = None,
    directory: _WITNESS_DIR = Path("var/witness"),
) -> None:
    """Follow a journal: cosign the checkpoints its key signs for these origins."""
    from carnet.witness.state import WitnessState

    candidate = Path(key)
    verifier = candidate.read_text(encoding="ascii").strip() if candidate.is_file() else key.strip()
    state = WitnessState(directory)
    try:
        for each in origin or [verifier.split("+", 1)[0]]:
            state.trust(each, verifier)
            typer.echo(f"following {each}")
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        state.close()


@witness_app.command("serve")
def witness_serve(
    directory: _WITNESS_DIR = Path("var/witness"),
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8100,
) -> None:
    """Serve the witness: POST /add-checkpoint cosigns checkpoints consistent with what it saw."""
    import uvicorn

    from carnet.witness.app import create_witness_app
    from carnet.witness.state import WitnessState

    state = WitnessState(directory)
    try:
        name, _ = state.signer()
    except CarnetError as exc:
        raise _fail(exc) from None
    console.print(f"witness {name} on http://{host}:{port}/ following {len(state.logs())} log(s)")
    uvicorn.run(create_witness_app(state), host=host, port=port, access_log=False, log_config=None)


def main() -> None:
    """Entry point of the ``carnet`` script."""
    try:
        app()
    except CarnetError as exc:
        console.print(f"[red]Error:[/red] {exc.message}")
        sys.exit(1)
