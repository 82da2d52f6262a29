"""``carnet patient represent``: the registry of legal representatives (a part of the ``carnet`` command).

The verification step of a representation happens at the desk: someone checks the documents
(a family record book or birth certificate for a parent, the judge's decision for a tutelle or
an habilitation familiale) and runs ``carnet patient represent add``. Each command calls
:class:`carnet.services.representations.Representations`; every change is journaled in the
represented record (docs/portals.md, "Legal representatives").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from carnet.cli_services import command_services
from carnet.domain.errors import CarnetError
from carnet.domain.principal import ActorKind, Principal
from carnet.services.representations import BASES

if TYPE_CHECKING:
    from carnet.api.app import Services

represent_app = typer.Typer(help="Legal representatives: who acts for which record.", no_args_is_help=True)
console = Console(stderr=True)
#: INS-NIR, INS-NIA, then the test and demonstration NIRs.
_INS_SYSTEMS = tuple(f"urn:oid:1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11))


def _operator() -> Principal:
    return Principal(kind=ActorKind.ADMIN, subject=f"cli:{os.environ.get('USER', 'operator')}")


def _record(services: Services, ins: str, what: str) -> str:
    value = ins.replace(" ", "")[:13]
    found = next(
        (p for p in (services.records.record_with(s, value) for s in _INS_SYSTEMS) if p is not None), None
    )
    if not value.isdigit() or found is None:
        console.print(f"[red]No record has the INS of the {what}.[/red] Check the 13 digits.")
        raise typer.Exit(2)
    return found


@represent_app.command("add")
def represent_add(
    ins: Annotated[
        str, typer.Option(help="The INS of the record represented (the child, the protected adult)")
    ],
    basis: Annotated[str, typer.Option(help="The legal basis: " + ", ".join(BASES))],
    name: Annotated[str, typer.Option(help="The representative's name, as on their identity document")],
    representative_ins: Annotated[
        str | None,
        typer.Option(
            help="The representative's own INS, when they hold a record here (no code is then needed)"
        ),
    ] = None,
) -> None:
    """Register a legal representative whose documents were checked; print their one-time claim code."""
    if basis not in BASES:
        console.print(f"[red]Unknown legal basis {basis!r}.[/red] Use one of: {', '.join(BASES)}.")
        raise typer.Exit(2)
    with command_services() as services:
        represented = _record(services, ins, "record represented")
        own = _record(services, representative_ins, "representative") if representative_ins else None
        try:
            link_id, code = services.representations.add(
                represented, basis=basis, name=name, by=_operator(), representative_record=own
            )
        except CarnetError as exc:
            console.print(f"[red]Error:[/red] {exc.message}")
            raise typer.Exit(1) from None
    if code is None:
        typer.echo(
            f"Patient/{represented}: representation {link_id} ({basis}) for the holder of Patient/{own}"
        )
    else:
        typer.echo(
            f"Patient/{represented}: representation {link_id} ({basis}); claim code {code} "
            "(one use, 3 days; give it to the representative only)"
        )


@represent_app.command("list")
def represent_list(
    ins: Annotated[str, typer.Option(help="The INS of the record represented")],
) -> None:
    """List the representatives of a record (name, basis, since, claimed or not)."""
    with command_services() as services:
        represented = _record(services, ins, "record represented")
        try:
            links = services.representations.of_record(represented)
        except CarnetError as exc:
            console.print(f"[red]Error:[/red] {exc.message}")
            raise typer.Exit(1) from None
    for link in links:
        state = "pending" if link.pending else "active"
        typer.echo(f"{link.link_id}\t{link.basis}\t{link.since:%Y-%m-%d}\t{state}\t{link.name}")
    if not links:
        typer.echo("No representative.")


@represent_app.command("remove")
def represent_remove(
    ins: Annotated[str, typer.Option(help="The INS of the record represented")],
    link: Annotated[str, typer.Option(help="The representation's id (carnet patient represent list)")],
) -> None:
    """End a representation (a judge's decision, the child's majority)."""
    with command_services() as services:
        represented = _record(services, ins, "record represented")
        try:
            services.representations.remove(represented, link, by=_operator())
        except CarnetError as exc:
            console.print(f"[red]Error:[/red] {exc.message}")
            raise typer.Exit(1) from None
    typer.echo(f"Patient/{represented}: representation {link} ended.")
