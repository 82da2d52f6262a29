"""The composition root of the web server: wires adapters into services and builds the app."""

from __future__ import annotations

import inspect
import logging
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from carnet.api import hot_routes
from carnet.api.auth import TokenVerifier, bearer_challenge, settle_app_refusal
from carnet.api.bulk import router as bulk_router
from carnet.api.confirmation import router as confirmation_router
from carnet.api.docs import mount_docs
from carnet.api.documents import router as documents_router
from carnet.api.edge import EdgeMiddleware
from carnet.api.feeds import router as feeds_router
from carnet.api.fhir import create as fhir_create
from carnet.api.fhir import fhir_response, router
from carnet.api.fhir import read as fhir_read
from carnet.api.guard import Guard
from carnet.api.interactions import router as interactions_router
from carnet.api.journal import public as journal_public
from carnet.api.journal import router as journal_router
from carnet.api.notifications import router as notifications_router
from carnet.api.operations import router as operations_router
from carnet.api.outcome import operation_outcome, outcome_of, status_of
from carnet.api.smart_config import router as smart_config_router
from carnet.api.studies import router as studies_router
from carnet.audit.signer import FileCheckpointSigner
from carnet.audit.witness_client import HTTPWitness
from carnet.auth.confirmation import confirmation_key
from carnet.auth.oidc import (
    AccessTokenVerifier,
    ClientSettings,
    OpenIDProvider,
    RelyingParty,
    encryption_key,
    public_jwks,
)
from carnet.crypto.aead import AESGCMCipher
from carnet.crypto.local_provider import LocalKeyProvider
from carnet.crypto.shares import ShareLedger
from carnet.domain.errors import (
    AppAccessEnded,
    AuditChainError,
    CarnetError,
    ConfigurationError,
    Conflict,
    RateLimited,
    SignInRefused,
    Unauthenticated,
)
from carnet.domain.policy import PROFILES
from carnet.domain.principal import Identifier
from carnet.feeds import mllp
from carnet.notify.worker import DeliveryWorker
from carnet.offload import offload
from carnet.services.apps import AppService
from carnet.services.export_jobs import ExportJobs
from carnet.services.feed_inbox import FeedInbox
from carnet.services.feed_intake import UNKNOWN_SENDER, HL7v2Intake, Receipt
from carnet.services.feed_registry import FeedRegistry
from carnet.services.identity_links import IdentityLinks
from carnet.services.journal import Journal
from carnet.services.keys import KeyService
from carnet.services.patient_accounts import PatientAccounts
from carnet.services.portal_sessions import PortalSessions
from carnet.services.ports import KeyProvider
from carnet.services.rate_limit import RateLimiter
from carnet.services.records import RecordService
from carnet.services.representations import Representations
from carnet.services.research_export import ResearchExports
from carnet.services.research_queries import ResearchQueries
from carnet.services.research_studies import StudyRegistry
from carnet.services.sign_ins import SignInJournal
from carnet.services.vault import Vault
from carnet.settings import Mode, Settings
from carnet.store.engine import make_engine, upgrade
from carnet.store.repository import SQLStore
from carnet.web import mount_web

log = logging.getLogger("carnet.api")


def utc_now() -> datetime:
    """The real clock (services receive it as a parameter)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh server-assigned id."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Everything wired once per process."""

    settings: Settings
    store: SQLStore
    keys: KeyProvider
    records: RecordService
    key_service: KeyService
    journal: Journal
    portal_sessions: PortalSessions
    feeds: FeedRegistry
    sign_ins: SignInJournal
    identity_links: IdentityLinks
    patient_accounts: PatientAccounts
    representations: Representations
    feed_inbox: FeedInbox
    hl7v2: HL7v2Intake
    apps: AppService
    studies: StudyRegistry
    exports: ExportJobs
    research: ResearchExports
    research_queries: ResearchQueries


def make_key_provider(settings: Settings) -> KeyProvider:
    """Build the configured key provider.

    Raises:
        ConfigurationError: the PKCS#11 settings are incomplete.
    """
    if settings.key_provider == "pkcs11":
        from carnet.crypto.pkcs11_provider import PKCS11KeyProvider

        if not (settings.pkcs11_module and settings.pkcs11_token and settings.pkcs11_pin):
            raise ConfigurationError("The pkcs11 key provider needs its module, token label and PIN.")
        return PKCS11KeyProvider(settings.pkcs11_module, settings.pkcs11_token, settings.pkcs11_pin)
    return LocalKeyProvider(settings.key_dir)


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Wire the store, the key provider and the services for ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.effective_database_url)
    if migrate:
        upgrade(engine, settings.database_distributed)
    store = SQLStore(engine)
    keys = make_key_provider(settings)
    profile = PROFILES[settings.policy_profile]
    cipher = AESGCMCipher()
    shares = ShareLedger(settings.key_dir / "shares")
    vault = Vault(keys=keys, shares=shares, cipher=cipher)
    try:
        witnesses = [HTTPWitness(url, key) for url, key in settings.witnesses]
    except AuditChainError as exc:
        raise ConfigurationError(f"CARNET_WITNESSES: {exc.message}") from None
    journal = Journal(
        store=store,
        cipher=cipher,
        signer=FileCheckpointSigner(settings.key_dir, settings.journal_origin),
        origin=settings.journal_origin,
        shards=settings.journal_shards,
        clock=utc_now,
        witnesses=witnesses,
    )
    try:
        with store.session(write=True) as session:
            vault.ensure_reserved(session, utc_now())
            journal.start(session)
    except Conflict:
        pass  # another process created them at the same moment
    records = RecordService(
        store=store, vault=vault, profile=profile, clock=utc_now, new_id=new_id, journal=journal
    )
    key_service = KeyService(store=store, keys=keys, shares=shares, profile=profile, clock=utc_now)
    feeds = FeedRegistry(store=store, clock=utc_now)
    inbox = FeedInbox(records=records, registry=feeds, clock=utc_now)
    studies = StudyRegistry(store=store, vault=vault, profile=profile, clock=utc_now)
    exports = ExportJobs(service=records, clock=utc_now, new_id=new_id)
    research = ResearchExports(service=records, registry=studies, jobs=exports, clock=utc_now)
    return Services(
        settings=settings,
        store=store,
        keys=keys,
        records=records,
        key_service=key_service,
        journal=journal,
        portal_sessions=PortalSessions(store=store, cipher=cipher, clock=utc_now),
        sign_ins=SignInJournal(store=store, vault=vault, journal=journal, clock=utc_now),
        identity_links=IdentityLinks(records),
        patient_accounts=PatientAccounts(
            store=store, vault=vault, cipher=cipher, journal=journal, clock=utc_now
        ),
        representations=Representations(
            store=store, vault=vault, cipher=cipher, journal=journal, clock=utc_now, new_id=new_id
        ),
        feeds=feeds,
        feed_inbox=inbox,
        hl7v2=HL7v2Intake(records=records, registry=feeds, inbox=inbox, clock=utc_now),
        apps=AppService(records=records, clock=utc_now),
        studies=studies,
        exports=exports,
        research=research,
        research_queries=ResearchQueries(store=store, registry=studies, exports=research, clock=utc_now),
    )


async def start_mllp(
    services: Services,
    *,
    feed_id: str | None,
    host: str,
    port: int,
    tls: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> mllp.Listener:
    """Listen for HL7 v2 messages over MLLP; each is answered by its ACK (and ZAM).

    The port does not say who sends. Over plain TCP the listener serves one feed (``feed_id``)
    that registered its sender, and every message must carry it (MSH-3^MSH-4). Over TLS
    (``tls``, which requires a client certificate) the certificate names the feed: a message
    on a connection whose certificate no feed registered, or another feed's than ``feed_id``
    when one is given, is answered ``AR`` and dead-lettered, never stored. ``reuse_port``: every
    worker process of ``carnet serve`` listens on the port (``SO_REUSEPORT``), so that each core
    takes messages, and they even out their connections through a table in the data directory
    (``mllp.Balance``); a connection stays with the worker that serves it (its frames in order).

    Raises:
        NotFound: ``feed_id`` is not registered. ConfigurationError: plain TCP without a feed
            whose sender is registered.
    """
    if feed_id is not None:
        feed = await offload(services.feeds.get, feed_id)
        if tls is None and not feed.sender:
            raise ConfigurationError(
                f"The MLLP listener cannot tell who sends: register feed {feed_id}'s sender "
                "(carnet feeds add --sender MSH-3^MSH-4) or listen over TLS with client certificates."
            )
    elif tls is None:
        raise ConfigurationError("An MLLP listener over plain TCP serves one feed (CARNET_MLLP_FEED).")

    def take(raw: bytes, certificate: str | None) -> Receipt:
        if tls is None:
            return services.hl7v2.receive(feed_id or "", raw, sender_required=True)
        try:
            feed = services.feeds.with_certificate(certificate)
        except CarnetError as exc:
            return services.hl7v2.refuse_sender(raw, exc.message, feed_id=feed_id or UNKNOWN_SENDER)
        if feed_id is not None and feed.feed_id != feed_id:
            message = f"This listener takes feed {feed_id}'s messages; the certificate is another feed's."
            return services.hl7v2.refuse_sender(raw, message, feed_id=feed_id)
        return services.hl7v2.receive(feed.feed_id, raw)

    async def handle(raw: bytes, certificate: str | None) -> list[bytes]:
        receipt = await offload(take, raw, certificate)
        return [receipt.ack] if receipt.business is None else [receipt.ack, receipt.business]

    return await mllp.serve(
        host,
        port,
        handle,
        max_bytes=services.settings.max_body_bytes,
        tls=tls,
        reuse_port=reuse_port,
        balance=(services.settings.data_dir / "mllp") if reuse_port else None,
    )


def mllp_tls(settings: Settings) -> ssl.SSLContext | None:
    """The MLLP listener's mutual TLS from CARNET_MLLP_TLS_CERT/KEY and CARNET_MLLP_CLIENT_CA, if set."""
    cert, key, authority = settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_client_ca
    if not (cert and key and authority):  # load_settings refuses a partial configuration
        return None
    return mllp.server_tls(cert, key, authority)


def start_background(services: Services) -> Callable[[], None]:
    """Start the server's background work; return the function that stops it.

    Two daemon threads: the journal's checkpointer (a signed checkpoint every
    ``CARNET_CHECKPOINT_SECONDS`` when the journal grew, sent to the witnesses to cosign) and the notification worker (the
    outbox delivered by SMTP every ``CARNET_WORKER_SECONDS``). Several processes may run them
    at once: a checkpoint is stored once per size, and an outbox message is leased to one worker.
    """
    settings = services.settings
    stop = threading.Event()
    checkpointer = threading.Thread(
        target=services.journal.run,
        args=(stop, float(settings.checkpoint_seconds)),
        name="carnet-checkpoints",
        daemon=True,
    )
    checkpointer.start()
    halt_delivery = DeliveryWorker(
        store=services.store, notifier=services.records.notifier, settings=settings
    ).start()

    def halt() -> None:
        stop.set()
        halt_delivery()
        checkpointer.join(timeout=10)

    return halt


def relying_party(settings: Settings) -> RelyingParty | None:
    """Build the OpenID relying party of the configured provider (None when sign-in is not configured)."""
    if not (settings.oidc_sign_in_enabled and settings.oidc_issuer):
        return None
    provider = OpenIDProvider(issuer=settings.oidc_issuer, discovery_url=settings.oidc_discovery_url)
    client = ClientSettings(
        client_id=settings.oidc_client_id or "",
        client_secret=settings.oidc_client_secret or "",
        redirect_uri=settings.effective_redirect_uri,
        scope=settings.oidc_scope,
        acr=settings.oidc_acr,
        leeway=settings.token_leeway_seconds,
    )
    return RelyingParty(provider, client, encryption_key(settings.key_dir))


def patient_relying_party(settings: Settings) -> RelyingParty | None:
    """Build the relying party patients sign in with (None when not configured)."""
    issuer, client_id, secret = (
        settings.patient_oidc_issuer,
        settings.patient_oidc_client_id,
        settings.patient_oidc_client_secret,
    )
    if not (issuer and client_id and secret):
        return None
    client = ClientSettings(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=settings.base_url.removesuffix("/fhir") + "/login/patient/oidc/callback",
        scope=settings.patient_oidc_scope,
        acr="",
        leeway=settings.token_leeway_seconds,
    )
    return RelyingParty(OpenIDProvider(issuer=issuer), client, encryption_key(settings.key_dir))


def _without_telemetry() -> dict[str, Any]:
    """FastAPI's own OpenTelemetry turned off, where this FastAPI has it (``telemetry=``, recent versions).

    Its spans would carry each request's URL, query string included, to whatever collector the
    environment names (``FASTAPI_OTEL_AUTO_CONFIGURE``): identifiers never leave in the logs,
    nor there. Off, it also stops costing a check of the global providers at every request.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}}


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    background: bool = True,
    demo_people: Sequence[tuple[Identifier, str]] = (),
) -> FastAPI:
    """Build the FastAPI application: the FHIR API at ``/fhir``, the journal, the portals.

    With ``background`` (the default), the app's lifespan runs :func:`start_background`.
    ``demo_people`` (INS and name) are offered on the development sign-in page when a record
    has their INS; ``carnet demo`` and ``carnet serve`` hand in those of ``carnet.demo``.
    """
    services = services or build_services(settings)
    wired = services
    sign_in = relying_party(settings)
    patient_sign_in = patient_relying_party(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        halt = start_background(wired) if background else None
        listener = None
        if settings.mllp_port:
            listener = await start_mllp(
                wired,
                feed_id=settings.mllp_feed,
                host=settings.host,
                port=settings.mllp_port,
                tls=mllp_tls(settings),
                reuse_port=True,  # every worker of carnet serve --workers N takes messages
            )
        try:
            yield
        finally:
            if listener is not None:
                listener.close()
                await listener.wait_closed()
            if halt is not None:
                halt()
            for party in (sign_in, patient_sign_in):
                if party is not None:
                    party.provider.close()

    app = FastAPI(
        title="Carnet FHIR R4 API",
        version="0.1.0",
        description="A patient-centred, sealed medical record. FHIR R4 JSON at /fhir.",
        # FastAPI's Swagger UI and ReDoc load scripts from a CDN: never served (api/docs.py).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api_docs and settings.mode is Mode.DEVELOPMENT else None,
        lifespan=lifespan,
        **_without_telemetry(),
    )
    app.state.services = services
    app.state.verifier = TokenVerifier(
        settings,
        access_tokens=AccessTokenVerifier(
            sign_in.provider,
            audience=settings.oidc_audience,
            leeway=settings.token_leeway_seconds,
            max_seconds=settings.token_max_seconds,
        )
        if sign_in is not None
        else None,
        opaque=services.apps.principal,
    )
    app.include_router(smart_config_router, prefix="/fhir")  # before /{resource_type}/… captures it
    app.state.confirmation_key = confirmation_key(settings.key_dir)
    app.include_router(confirmation_router, prefix="/fhir")  # before /{resource_type}/… captures it
    app.include_router(documents_router, prefix="/fhir")  # before /{resource_type}/… captures it
    app.include_router(notifications_router, prefix="/fhir")  # likewise
    app.include_router(operations_router, prefix="/fhir")  # likewise
    app.include_router(bulk_router, prefix="/fhir")  # likewise ($export, Patient/$export, Group/…/$export)
    app.include_router(studies_router, prefix="/fhir")  # likewise (ResearchStudy: the studies registry)
    app.include_router(journal_router, prefix="/fhir")  # likewise
    app.include_router(journal_public, prefix="/journal")
    app.include_router(feeds_router)
    app.include_router(interactions_router, prefix="/fhir")
    app.include_router(router, prefix="/fhir")
    if app.openapi_url is not None:
        mount_docs(app)

    @app.exception_handler(CarnetError)
    async def _carnet_error(request: Request, exc: CarnetError) -> Response:
        status = status_of(exc)
        headers = {"WWW-Authenticate": bearer_challenge(exc)} if isinstance(exc, Unauthenticated) else None
        if isinstance(exc, AppAccessEnded):
            # The app's token no longer holds: journaled on its patient's record, under its name.
            try:
                await offload(settle_app_refusal, wired.apps, exc, request.method, request.url.path)
            except CarnetError as error:  # the 401 stands; the journal's failure is logged
                log.error("journal of a refused app token failed: %s", type(error).__name__)
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        if isinstance(exc, SignInRefused):
            # A token of the configured OpenID issuer that does not verify: journaled as a refused sign-in.
            await offload(
                wired.sign_ins.record,
                actor_kind="unknown",
                actor_id="unknown",
                accepted=False,
                reason=f"bearer:{exc.reason}",
                outcome=exc.reason,
            )
        if status >= 500:
            log.error(
                "request failed: %s %s -> %s (%s)",
                request.method,
                request.url.path,
                status,
                type(exc).__name__,
            )
        return fhir_response(outcome_of(exc), status=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        message = {
            404: "No such endpoint; the FHIR API is under /fhir (see /fhir/metadata).",
            405: "This method is not allowed on this endpoint; see /fhir/metadata.",
        }.get(exc.status_code, str(exc.detail))
        return fhir_response(operation_outcome(code, message), status=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return fhir_response(
            operation_outcome("invalid", "The request is malformed; check its parameters."), status=400
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return fhir_response(
            operation_outcome("exception", "An internal error occurred; it has been logged."), status=500
        )

    # The portals; their "/" answers API clients as below.
    mount_web(
        app,
        services,
        settings,
        status_of=status_of,
        demo_people=demo_people,
        sign_in=sign_in,
        patient_sign_in=patient_sign_in,
        sign_in_jwks=public_jwks(encryption_key(settings.key_dir)) if sign_in is not None else None,
    )

    @app.get("/", include_in_schema=False)
    async def _root() -> Response:
        return Response(
            content=b'{"service":"carnet","fhir":"/fhir/metadata"}', media_type="application/json"
        )

    # The single read and create skip FastAPI's walk of every route (api/hot_routes.py) and,
    # without a cookie, the layers below the edge (api/edge.py).
    hot_routes.install(
        app.router.routes,
        [
            ("GET", "/fhir/{resource_type}/{resource_id}", fhir_read),
            ("POST", "/fhir/{resource_type}", fhir_create),
        ],
    )
    guard = Guard(
        verifier=app.state.verifier,
        limiter=RateLimiter(per_minute=settings.api_rate_per_minute, burst=settings.api_burst),
        seconds=float(settings.request_seconds),
    )
    # The outermost of Carnet's layers; the routes and exception handlers are read when the stack is built.
    app.add_middleware(EdgeMiddleware, guard=guard, routes=app.router.routes, handlers=app.exception_handlers)
    return app
