"""``carnet research``: the study registry, study exports and DP questions (a composition root, like cli.py).

The operator acts in a role named on the command line: an administrator registers
(``--by``), the DPO approves or withdraws, a researcher exports and asks; the policy decides
each as it does over the API.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from carnet.cli_services import command_services
from carnet.domain.errors import CarnetError
from carnet.domain.principal import ActorKind, Principal
from carnet.services.research_ports import ExportStatus
from carnet.services.research_queries import parse_question

if TYPE_CHECKING:
    from carnet.api.app import Services

research_app = typer.Typer(
    help="Research studies: register, approve, export pseudonymised data, ask DP questions.",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()


@contextmanager
def _services() -> Iterator[Services]:
    with command_services() as services:
        try:
            yield services
        except CarnetError as exc:
            console.print(f"[red]Error:[/red] {exc.message}")
            raise typer.Exit(1) from None


def _as(kind: ActorKind, name: str) -> Principal:
    return Principal(kind=kind, subject=f"{kind.value}:{name}", display=name)


StudyId = Annotated[str, typer.Argument(help="The study's id (letters, digits, '-', '.')")]


@research_app.command("register")
def research_register(
    study_id: StudyId,
    registration: Annotated[Path, typer.Argument(help="The study's registration (JSON; docs/research.md)")],
    by: Annotated[str, typer.Option(help="The administrator registering it")] = "admin",
) -> None:
    """Register a study (as an administrator); it exports nothing until the DPO approves it."""
    try:
        data = json.loads(registration.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        console.print(f"[red]Error:[/red] {registration} is not a readable JSON file ({type(exc).__name__}).")
        raise typer.Exit(1) from None
    with _services() as services:
        study = services.studies.register(_as(ActorKind.ADMIN, by), study_id, data)
    console.print(
        f"Study {study.study_id} registered; the DPO approves it with: carnet research approve {study_id}"
    )


@research_app.command("approve")
def research_approve(
    study_id: StudyId, by: Annotated[str, typer.Option(help="The DPO approving it")] = "dpo"
) -> None:
    """Approve a registered study (as the DPO)."""
    with _services() as services:
        services.studies.approve(_as(ActorKind.DPO, by), study_id)
    console.print(f"Study {study_id} approved.")


@research_app.command("withdraw")
def research_withdraw(
    study_id: StudyId, by: Annotated[str, typer.Option(help="The DPO withdrawing it")] = "dpo"
) -> None:
    """Withdraw a study (as the DPO): its key is destroyed and nothing more is exported for it."""
    with _services() as services:
        services.studies.withdraw(_as(ActorKind.DPO, by), study_id)
    console.print(f"Study {study_id} withdrawn; its key is destroyed.")


@research_app.command("list")
def research_list() -> None:
    """List the registered studies: id, status, legal basis, sponsor, period, k, ε."""
    table = Table("id", "status", "basis", "sponsor", "period", "k", "ε", "title")
    with _services() as services:
        studies = services.studies.list()
    for s in studies:
        period = f"{s.start.isoformat()} → {s.end.isoformat()}"
        table.add_row(
            s.study_id,
            s.status.value,
            s.legal_basis.value,
            s.sponsor,
            period,
            str(s.privacy.k),
            str(s.privacy.epsilon),
            s.title,
        )
    out.print(table)


@research_app.command("export")
def research_export(
    study_id: StudyId,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the NDJSON files and manifest.json")],
    researcher: Annotated[str, typer.Option(help="The researcher asking")] = "researcher",
    types: Annotated[
        str | None, typer.Option("--type", help="_type: resource types, comma-separated")
    ] = None,
    since: Annotated[str | None, typer.Option(help="_since: only resources changed since")] = None,
    type_filter: Annotated[
        list[str] | None, typer.Option("--type-filter", help="_typeFilter: Type?code=system|code")
    ] = None,
) -> None:
    """Export a study's pseudonymised, k-anonymous data (as a researcher) into NDJSON files."""
    actor = _as(ActorKind.RESEARCHER, researcher)
    with _services() as services:
        job = services.research.start(
            actor, study_id, types=types, since=since, type_filters=type_filter or []
        )
        runner = threading.Thread(target=services.research.run, args=(actor, job.export_id), daemon=True)
        runner.start()
        with console.status("export: starting") as status:
            while runner.is_alive():
                status.update(services.exports.status(actor, job.export_id).progress)
                time.sleep(0.3)
        job = services.exports.status(actor, job.export_id)
        if job.status is not ExportStatus.DONE:
            console.print(f"[red]Export failed:[/red] {job.error}")
            raise typer.Exit(1)
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        files: list[dict[str, object]] = []
        for part, resource_type, lines in services.exports.index(actor, job.export_id):
            name = f"{part:05d}.{resource_type}.ndjson"
            (out_dir / name).write_bytes(services.exports.part(actor, job.export_id, part))
            files.append({"type": resource_type, "url": name, "count": lines})
        manifest = {"transactionTime": job.requested_at.isoformat(), "output": files, "summary": job.summary}
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), "utf-8")
    console.print(f"Export {job.export_id}: {job.summary} → {out_dir}")


@research_app.command("ask")
def research_ask(
    study_id: StudyId,
    epsilon: Annotated[float, typer.Option(help="The ε this question spends from the study's budget")],
    by: Annotated[str | None, typer.Option(help="Histogram by 'sex' or 'age' (default: a count)")] = None,
    categories: Annotated[
        str | None, typer.Option(help="The histogram's categories, comma-separated")
    ] = None,
    code: Annotated[str | None, typer.Option(help="Only patients holding this code (system|code)")] = None,
    researcher: Annotated[str, typer.Option(help="The researcher asking")] = "researcher",
) -> None:
    """Answer a count or histogram of the study's cohort with differential privacy (OpenDP)."""
    raw: dict[str, object] = {"kind": "histogram" if by else "count", "epsilon": epsilon}
    if by:
        raw |= {"by": by, "categories": [c for c in (categories or "").split(",") if c]}
    if code:
        raw["code"] = code
    with _services() as services:
        released = services.research_queries.ask(
            _as(ActorKind.RESEARCHER, researcher), study_id, parse_question(raw)
        )
    answer = released.answer
    labels = answer.categories or ("count",)
    for label, value in zip(labels, answer.counts, strict=True):
        typer.echo(f"{label}\t{value}")
    console.print(f"ε spent {released.spent:.4g} of {released.budget:.4g}")


@research_app.command("ledger")
def research_ledger(study_id: StudyId) -> None:
    """Show a study's privacy-budget ledger: every answered question, who asked, when, its ε."""
    table = Table("#", "asked at", "by", "ε", "question")
    with _services() as services:
        rows = services.research_queries.ledger(study_id)
    for row in rows:
        table.add_row(
            str(row.seq),
            row.asked_at.isoformat(timespec="seconds"),
            row.asked_by,
            f"{row.epsilon:.4g}",
            row.question,
        )
    out.print(table)
    console.print(f"ε spent: {sum(r.epsilon for r in rows):.4g}")
