"""``carnet apps``: the registry of apps connected by SMART on FHIR (a part of the ``carnet`` command).

Each command builds the services and calls :class:`carnet.services.apps.AppService` (docs/apps.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from carnet.cli_services import command_services
from carnet.domain.errors import CarnetError
from carnet.services.apps import AppKind
from carnet.settings import Settings, load

apps_app = typer.Typer(help="Apps connected by SMART on FHIR: the registry.", no_args_is_help=True)
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load(os.environ)
    except CarnetError as exc:
        console.print(f"[red]Configuration error:[/red] {exc.message}")
        raise typer.Exit(2) from None


def _fail(exc: CarnetError) -> typer.Exit:
    console.print(f"[red]Error:[/red] {exc.message}")
    return typer.Exit(1)


@apps_app.command("add")
def apps_add(
    name: Annotated[str, typer.Argument(help="The app's name, as the patient sees it")],
    kind: Annotated[
        str, typer.Option(help="public (PKCE only), confidential (a secret) or backend")
    ] = "public",
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="A redirect URI (repeat)")
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A scope it may ask for (repeat)")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="The client id (drawn at random if not given)")
    ] = None,
    jwks: Annotated[Path | None, typer.Option(help="Backend service: its public JWK Set (JSON file)")] = None,
    acts_as: Annotated[
        str | None,
        typer.Option(help="Backend service: 'study:<study id>' (a research pipeline) or 'feed:<feed id>'"),
    ] = None,
) -> None:
    """Register an app; print its client id (and, for a confidential app, its secret, once)."""
    from carnet.api.app import build_services

    if kind not in {k.value for k in AppKind}:
        console.print(f"[red]Error:[/red] --kind {kind!r}: choose public, confidential or backend.")
        raise typer.Exit(1)
    settings = _settings()
    try:
        keys = json.loads(jwks.read_text()) if jwks is not None else None
    except (OSError, ValueError):
        console.print(f"[red]Error:[/red] {jwks} is not a readable JSON JWK Set.")
        raise typer.Exit(1) from None
    services = build_services(settings)
    try:
        client, secret = services.apps.register(
            name=name,
            kind=AppKind(kind),
            redirect_uris=tuple(redirect_uri or ()),
            scopes=tuple(scope or ()),
            client_id=client_id,
            jwks=keys,
            acts_as=acts_as,
            loopback_http=settings.development_issuer_enabled,
        )
    except CarnetError as exc:
        raise _fail(exc) from None
    finally:
        services.store.engine.dispose()  # the command may run in-process (tests): close its connections
    typer.echo(f"client_id: {client.client_id}")
    if secret is not None:
        typer.echo(f"client_secret: {secret}")


@apps_app.command("list")
def apps_list() -> None:
    """List the registered apps: client id, kind, name, redirect URIs and scopes."""
    with command_services() as services:
        clients = services.apps.clients()
    for client in clients:
        typer.echo(
            f"{client.client_id}\t{client.kind.value}\t{client.name}\t"
            f"{' '.join(client.redirect_uris) or '-'}\t{' '.join(client.scopes)}"
        )


@apps_app.command("remove")
def apps_remove(client_id: Annotated[str, typer.Argument(help="The app's client id")]) -> None:
    """Remove an app from the registry; every token it holds stops working at once."""
    with command_services() as services:
        try:
            services.apps.remove(client_id)
        except CarnetError as exc:
            raise _fail(exc) from None
    console.print(f"{client_id}: removed; its tokens are revoked.")
