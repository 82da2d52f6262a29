"""One frozen ``Settings`` built from ``CARNET_*`` environment variables at start-up.

=============================  ====================================================  ======================
variable                       meaning                                               default
=============================  ====================================================  ======================
CARNET_MODE                    ``development`` or ``production``                     development
CARNET_DATA_DIR                the data directory (SQLite database, blobs)           ./var/data
CARNET_KEY_DIR                 the local key directory, kept apart from the data     ./var/keys
CARNET_DATABASE_URL            ``sqlite:///…`` or ``postgresql://…``                 SQLite in the data dir
CARNET_KEY_PROVIDER            ``local`` or ``pkcs11``                               local
CARNET_PKCS11_MODULE           path of the PKCS#11 module (pkcs11)                   —
CARNET_PKCS11_TOKEN            token label (pkcs11)                                  —
CARNET_PKCS11_PIN              user PIN (pkcs11; never logged)                       —
CARNET_POLICY_PROFILE          ``fr-dmp`` or ``sovereign``                           fr-dmp
CARNET_MAX_BODY_BYTES          largest accepted request body                         20000000
CARNET_BASE_URL                public base URL of the FHIR API                       http://127.0.0.1:8000/fhir
CARNET_HOST / CARNET_PORT      where ``carnet serve`` listens                        127.0.0.1 / 8000
CARNET_OIDC_ISSUER             issuer of production tokens                           —
CARNET_OIDC_AUDIENCE           expected audience of production tokens                carnet
CARNET_OIDC_JWKS_FILE          JSON Web Key Set of the issuer (static; else fetched)  —
CARNET_OIDC_CLIENT_ID          Carnet's client id at the issuer (portal sign-in)     —
CARNET_OIDC_CLIENT_SECRET      its client secret (never logged)                      —
CARNET_OIDC_DISCOVERY_URL      discovery document URL                                PSC's name, then the
                                                                                     standard one
CARNET_OIDC_REDIRECT_URI       the callback URL registered at the issuer             <base>/login/oidc/callback
CARNET_OIDC_SCOPE              scopes asked for                                      openid scope_all
CARNET_OIDC_ACR                authentication level asked for (and required)         eidas1
CARNET_OIDC_CLAIMS             ``psc``, or ``idnps=claim,profession=claim,…``        psc
CARNET_PATIENT_OIDC_ISSUER     OpenID provider patients sign in with                 —
CARNET_PATIENT_OIDC_CLIENT_ID  Carnet's client id there                              —
CARNET_PATIENT_OIDC_CLIENT_SECRET  its secret (never logged)                         —
CARNET_PATIENT_OIDC_SCOPE      scopes asked for                                      openid profile
CARNET_JOURNAL_SHARDS          independent Merkle logs of the access journal          1
CARNET_JOURNAL_ORIGIN          origin line of the journal's checkpoints               carnet.localhost/journal
CARNET_CHECKPOINT_SECONDS      seconds between signed checkpoints (when it grew)      2
CARNET_WITNESSES               witnesses of the journal: ``<url> <verifier key>``,    —
                               comma-separated (``carnet witness init`` prints the key)
CARNET_WITNESS_QUORUM          cosignatures a checkpoint needs to count as witnessed  all the witnesses
CARNET_SMTP_HOST               SMTP server for notices (none: they wait in the outbox) —
CARNET_SMTP_PORT               its port                                              25
CARNET_SMTP_SECURITY           ``none``, ``starttls`` or ``tls``                        none
CARNET_SMTP_USER               SMTP login (optional)                                 —
CARNET_SMTP_PASSWORD           SMTP password (never logged)                          —
CARNET_SMTP_FROM               sender address of notices                             carnet@localhost
CARNET_WORKER_SECONDS          seconds between the worker's passes over the outbox   2
CARNET_MAX_ELEMENTS            most JSON values in one request body                  200000
CARNET_MAX_RESOURCE_ELEMENTS   most JSON values in one resource                      20000
CARNET_MAX_BUNDLE_ENTRIES      most entries in a batch or transaction Bundle         1000
CARNET_MAX_DEPTH               deepest JSON nesting (at most 100)                    100
CARNET_REQUEST_SECONDS         longest time spent on one API request (503 beyond)    30
CARNET_API_RATE_PER_MINUTE     API requests per principal (or address) and minute    600
CARNET_API_BURST               requests a principal may send at once                 120
CARNET_LOGIN_RATE_PER_MINUTE   portal sign-ins per client address, and per account   10
CARNET_API_DOCS                ``on``: serve /openapi.json and /docs (development)   off
CARNET_TOKEN_MAX_SECONDS       longest lifetime (exp - iat) of a production token    3600
CARNET_TOKEN_LEEWAY_SECONDS    clock skew allowed on exp, iat and nbf                60
=============================  ====================================================  ======================

An unknown ``CARNET_*`` variable stops start-up (a typo must not silently fall back to a
default). ``CARNET_TEST_*`` variables belong to the test suite and are ignored here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from carnet.auth.claims import parse_mapping
from carnet.domain.errors import ConfigurationError
from carnet.domain.policy import PROFILES


class Mode(StrEnum):
    """Deployment mode."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


KNOWN = frozenset(
    {
        "CARNET_MODE",
        "CARNET_DATA_DIR",
        "CARNET_KEY_DIR",
        "CARNET_DATABASE_URL",
        "CARNET_DATABASE_DISTRIBUTED",
        "CARNET_KEY_PROVIDER",
        "CARNET_PKCS11_MODULE",
        "CARNET_PKCS11_TOKEN",
        "CARNET_PKCS11_PIN",
        "CARNET_POLICY_PROFILE",
        "CARNET_MAX_BODY_BYTES",
        "CARNET_BASE_URL",
        "CARNET_HOST",
        "CARNET_PORT",
        "CARNET_OIDC_ISSUER",
        "CARNET_OIDC_AUDIENCE",
        "CARNET_OIDC_JWKS_FILE",
        "CARNET_OIDC_CLIENT_ID",
        "CARNET_OIDC_CLIENT_SECRET",
        "CARNET_OIDC_DISCOVERY_URL",
        "CARNET_OIDC_REDIRECT_URI",
        "CARNET_OIDC_SCOPE",
        "CARNET_OIDC_ACR",
        "CARNET_OIDC_CLAIMS",
        "CARNET_PATIENT_OIDC_ISSUER",
        "CARNET_PATIENT_OIDC_CLIENT_ID",
        "CARNET_PATIENT_OIDC_CLIENT_SECRET",
        "CARNET_PATIENT_OIDC_SCOPE",
        "CARNET_JOURNAL_SHARDS",
        "CARNET_JOURNAL_ORIGIN",
        "CARNET_CHECKPOINT_SECONDS",
        "CARNET_WITNESSES",
        "CARNET_WITNESS_QUORUM",
        "CARNET_SMTP_HOST",
        "CARNET_SMTP_PORT",
        "CARNET_SMTP_SECURITY",
        "CARNET_SMTP_USER",
        "CARNET_SMTP_PASSWORD",
        "CARNET_SMTP_FROM",
        "CARNET_WORKER_SECONDS",
        "CARNET_TOKEN_MAX_SECONDS",
        "CARNET_API_DOCS",
        "CARNET_MAX_ELEMENTS",
        "CARNET_MAX_RESOURCE_ELEMENTS",
        "CARNET_MAX_BUNDLE_ENTRIES",
        "CARNET_MAX_DEPTH",
        "CARNET_REQUEST_SECONDS",
        "CARNET_API_RATE_PER_MINUTE",
        "CARNET_API_BURST",
        "CARNET_LOGIN_RATE_PER_MINUTE",
        "CARNET_TOKEN_LEEWAY_SECONDS",
        "CARNET_MLLP_PORT",
        "CARNET_MLLP_FEED",
        "CARNET_MLLP_TLS_CERT",
        "CARNET_MLLP_TLS_KEY",
        "CARNET_MLLP_CLIENT_CA",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Carnet's configuration."""

    mode: Mode = Mode.DEVELOPMENT
    data_dir: Path = Path("var/data")
    key_dir: Path = Path("var/keys")
    database_url: str = ""
    #: "" distributes the schema when the database is Citus, "citus" requires it, "none" never.
    database_distributed: str = ""
    key_provider: str = "local"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = None
    policy_profile: str = "fr-dmp"
    max_body_bytes: int = 20_000_000
    base_url: str = "http://127.0.0.1:8000/fhir"
    host: str = "127.0.0.1"
    port: int = 8000
    oidc_issuer: str | None = None
    oidc_audience: str = "carnet"
    oidc_jwks_file: Path | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_discovery_url: str | None = None
    oidc_redirect_uri: str | None = None
    oidc_scope: str = "openid scope_all"
    oidc_acr: str = "eidas1"
    oidc_claims: str = "psc"
    patient_oidc_issuer: str | None = None
    patient_oidc_client_id: str | None = None
    patient_oidc_client_secret: str | None = None
    patient_oidc_scope: str = "openid profile"
    journal_shards: int = 1
    journal_origin: str = "carnet.localhost/journal"
    checkpoint_seconds: int = 2
    #: ``(submission URL prefix, verifier key)`` of each witness of the journal.
    witnesses: tuple[tuple[str, str], ...] = ()
    #: How many of them must cosign a checkpoint; 0 means all of them.
    witness_quorum: int = 0
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "carnet@localhost"
    worker_seconds: int = 2
    token_max_seconds: int = 3600
    token_leeway_seconds: int = 60
    api_docs: bool = False
    max_elements: int = 200_000
    max_resource_elements: int = 20_000
    max_bundle_entries: int = 1000
    max_depth: int = 100
    request_seconds: int = 30
    api_rate_per_minute: int = 600
    api_burst: int = 120
    login_rate_per_minute: int = 10
    #: The MLLP listener that ``carnet serve`` starts for one registered HL7 v2 feed (0: none).
    mllp_port: int = 0
    mllp_feed: str | None = None
    #: Mutual TLS on that listener: its certificate and key, and the CA of the senders' certificates.
    mllp_tls_cert: str | None = None
    mllp_tls_key: str | None = None
    mllp_client_ca: str | None = None

    def __repr__(self) -> str:
        # The PIN never appears in logs or tracebacks.
        return f"Settings(mode={self.mode}, data_dir={self.data_dir}, key_provider={self.key_provider})"

    @property
    def effective_database_url(self) -> str:
        """The database URL, SQLite inside the data directory by default."""
        return self.database_url or f"sqlite:///{self.data_dir / 'carnet.sqlite3'}"

    @property
    def effective_witness_quorum(self) -> int:
        """The cosignatures a checkpoint needs (every configured witness unless set lower)."""
        return self.witness_quorum or len(self.witnesses)

    @property
    def effective_redirect_uri(self) -> str:
        """The OpenID callback URL: configured, else beside the FHIR base URL."""
        if self.oidc_redirect_uri:
            return self.oidc_redirect_uri
        base = self.base_url.removesuffix("/fhir")
        return f"{base}/login/oidc/callback"

    @property
    def oidc_sign_in_enabled(self) -> bool:
        """Whether the portals offer sign-in with the configured OpenID provider."""
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    @property
    def development_issuer_enabled(self) -> bool:
        """Whether the embedded development token issuer is accepted (never in production)."""
        return self.mode is Mode.DEVELOPMENT


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigurationError(f"{name} must be a whole number, not {raw[:20]!r}.")
    return int(raw)


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "off").strip().lower()
    if raw not in ("on", "off"):
        raise ConfigurationError(f"{name} must be 'on' or 'off', not {raw[:20]!r}.")
    return raw == "on"


def _witnesses(raw: str) -> tuple[tuple[str, str], ...]:
    """Parse ``<url> <verifier key>, <url> <verifier key>…``."""
    witnesses: list[tuple[str, str]] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        parts = item.split()
        if len(parts) != 2 or not parts[0].startswith(("http://", "https://")) or parts[1].count("+") < 2:
            raise ConfigurationError(
                "CARNET_WITNESSES must be '<http(s) URL> <verifier key>' pairs separated by commas."
            )
        witnesses.append((parts[0].rstrip("/"), parts[1]))
    names = [key.split("+", 1)[0] for _, key in witnesses]
    if len(set(names)) != len(names):
        raise ConfigurationError("CARNET_WITNESSES names the same witness twice.")
    return tuple(witnesses)


def _local_base_url(host: str, port: int) -> str:
    """The FHIR API's address when ``CARNET_BASE_URL`` is not set: this server's host and port.

    A server listening on every address (``0.0.0.0``, ``::``) is named by its loopback address.
    """
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (read, not bound: the wildcard addresses)
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/fhir"


def load(env: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping.

    Raises:
        ConfigurationError: an unknown ``CARNET_*`` key, a bad value, or a production setting missing.
    """
    unknown = sorted(
        k for k in env if k.startswith("CARNET_") and not k.startswith("CARNET_TEST_") and k not in KNOWN
    )
    if unknown:
        raise ConfigurationError(
            f"Unknown setting {unknown[0]}; the known ones are listed in docs/configuration.md."
        )
    try:
        mode = Mode(env.get("CARNET_MODE", "development"))
    except ValueError:
        raise ConfigurationError("CARNET_MODE must be 'development' or 'production'.") from None
    profile = env.get("CARNET_POLICY_PROFILE", "fr-dmp")
    if profile not in PROFILES:
        raise ConfigurationError(f"CARNET_POLICY_PROFILE must be one of {', '.join(sorted(PROFILES))}.")
    provider = env.get("CARNET_KEY_PROVIDER", "local")
    if provider not in ("local", "pkcs11"):
        raise ConfigurationError("CARNET_KEY_PROVIDER must be 'local' or 'pkcs11'.")
    host, port = env.get("CARNET_HOST", "127.0.0.1"), _int(env, "CARNET_PORT", 8000)
    settings = Settings(
        mode=mode,
        data_dir=Path(env.get("CARNET_DATA_DIR", "var/data")),
        key_dir=Path(env.get("CARNET_KEY_DIR", "var/keys")),
        database_url=env.get("CARNET_DATABASE_URL", ""),
        database_distributed=env.get("CARNET_DATABASE_DISTRIBUTED", ""),
        key_provider=provider,
        pkcs11_module=env.get("CARNET_PKCS11_MODULE"),
        pkcs11_token=env.get("CARNET_PKCS11_TOKEN"),
        pkcs11_pin=env.get("CARNET_PKCS11_PIN"),
        policy_profile=profile,
        max_body_bytes=_int(env, "CARNET_MAX_BODY_BYTES", 20_000_000),
        base_url=(env.get("CARNET_BASE_URL") or _local_base_url(host, port)).rstrip("/"),
        host=host,
        port=port,
        oidc_issuer=env.get("CARNET_OIDC_ISSUER"),
        oidc_audience=env.get("CARNET_OIDC_AUDIENCE", "carnet"),
        oidc_jwks_file=Path(env["CARNET_OIDC_JWKS_FILE"]) if env.get("CARNET_OIDC_JWKS_FILE") else None,
        oidc_client_id=env.get("CARNET_OIDC_CLIENT_ID") or None,
        oidc_client_secret=env.get("CARNET_OIDC_CLIENT_SECRET") or None,
        oidc_discovery_url=env.get("CARNET_OIDC_DISCOVERY_URL") or None,
        oidc_redirect_uri=env.get("CARNET_OIDC_REDIRECT_URI") or None,
        oidc_scope=env.get("CARNET_OIDC_SCOPE", "openid scope_all"),
        oidc_acr=env.get("CARNET_OIDC_ACR", "eidas1"),
        oidc_claims=env.get("CARNET_OIDC_CLAIMS", "psc"),
        patient_oidc_issuer=env.get("CARNET_PATIENT_OIDC_ISSUER") or None,
        patient_oidc_client_id=env.get("CARNET_PATIENT_OIDC_CLIENT_ID") or None,
        patient_oidc_client_secret=env.get("CARNET_PATIENT_OIDC_CLIENT_SECRET") or None,
        patient_oidc_scope=env.get("CARNET_PATIENT_OIDC_SCOPE", "openid profile"),
        journal_shards=_int(env, "CARNET_JOURNAL_SHARDS", 1),
        journal_origin=env.get("CARNET_JOURNAL_ORIGIN", "carnet.localhost/journal"),
        checkpoint_seconds=_int(env, "CARNET_CHECKPOINT_SECONDS", 2),
        witnesses=_witnesses(env.get("CARNET_WITNESSES", "")),
        witness_quorum=_int(env, "CARNET_WITNESS_QUORUM", 0),
        smtp_host=env.get("CARNET_SMTP_HOST") or None,
        smtp_port=_int(env, "CARNET_SMTP_PORT", 25),
        smtp_security=env.get("CARNET_SMTP_SECURITY", "none"),
        smtp_user=env.get("CARNET_SMTP_USER") or None,
        smtp_password=env.get("CARNET_SMTP_PASSWORD") or None,
        smtp_from=env.get("CARNET_SMTP_FROM", "carnet@localhost"),
        worker_seconds=_int(env, "CARNET_WORKER_SECONDS", 2),
        token_max_seconds=_int(env, "CARNET_TOKEN_MAX_SECONDS", 3600),
        token_leeway_seconds=_int(env, "CARNET_TOKEN_LEEWAY_SECONDS", 60),
        api_docs=_switch(env, "CARNET_API_DOCS"),
        max_elements=_int(env, "CARNET_MAX_ELEMENTS", 200_000),
        max_resource_elements=_int(env, "CARNET_MAX_RESOURCE_ELEMENTS", 20_000),
        max_bundle_entries=_int(env, "CARNET_MAX_BUNDLE_ENTRIES", 1000),
        max_depth=_int(env, "CARNET_MAX_DEPTH", 100),
        request_seconds=_int(env, "CARNET_REQUEST_SECONDS", 30),
        api_rate_per_minute=_int(env, "CARNET_API_RATE_PER_MINUTE", 600),
        api_burst=_int(env, "CARNET_API_BURST", 120),
        login_rate_per_minute=_int(env, "CARNET_LOGIN_RATE_PER_MINUTE", 10),
        mllp_port=_int(env, "CARNET_MLLP_PORT", 0),
        mllp_feed=env.get("CARNET_MLLP_FEED") or None,
        mllp_tls_cert=env.get("CARNET_MLLP_TLS_CERT") or None,
        mllp_tls_key=env.get("CARNET_MLLP_TLS_KEY") or None,
        mllp_client_ca=env.get("CARNET_MLLP_CLIENT_CA") or None,
    )
    tls = (settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_client_ca)
    if any(tls) and not all(tls):
        raise ConfigurationError(
            "MLLP over TLS needs CARNET_MLLP_TLS_CERT, CARNET_MLLP_TLS_KEY and CARNET_MLLP_CLIENT_CA together."
        )
    if settings.mllp_port and settings.mllp_feed is None and not all(tls):
        raise ConfigurationError(
            "CARNET_MLLP_PORT needs CARNET_MLLP_FEED (the registered feed it listens for), or "
            "mutual TLS (CARNET_MLLP_TLS_CERT/KEY, CARNET_MLLP_CLIENT_CA), where the certificate names the feed."
        )
    if not 2 <= settings.max_depth <= 100:
        # The validator and the serialiser recurse: deeper input could exhaust Python's stack.
        raise ConfigurationError("CARNET_MAX_DEPTH must be between 2 and 100.")
    for name, value in (
        ("CARNET_MAX_ELEMENTS", settings.max_elements),
        ("CARNET_MAX_RESOURCE_ELEMENTS", settings.max_resource_elements),
        ("CARNET_MAX_BUNDLE_ENTRIES", settings.max_bundle_entries),
        ("CARNET_REQUEST_SECONDS", settings.request_seconds),
    ):
        if value < 1:
            raise ConfigurationError(f"{name} must be at least 1.")
    if settings.token_max_seconds < 1:
        raise ConfigurationError("CARNET_TOKEN_MAX_SECONDS must be at least 1.")
    if settings.token_leeway_seconds > 300:
        raise ConfigurationError("CARNET_TOKEN_LEEWAY_SECONDS must be at most 300: clocks are kept in sync.")
    if settings.database_distributed not in ("", "citus", "none"):
        raise ConfigurationError("CARNET_DATABASE_DISTRIBUTED must be empty (detect), 'citus' or 'none'.")
    if not 1 <= settings.journal_shards <= 1024:
        raise ConfigurationError("CARNET_JOURNAL_SHARDS must be between 1 and 1024.")
    if settings.witness_quorum > len(settings.witnesses):
        raise ConfigurationError(
            f"CARNET_WITNESS_QUORUM is {settings.witness_quorum} but CARNET_WITNESSES names "
            f"{len(settings.witnesses)} witnesses; lower the quorum or add witnesses."
        )
    if bool(settings.oidc_client_id) != bool(settings.oidc_client_secret):
        raise ConfigurationError("CARNET_OIDC_CLIENT_ID and CARNET_OIDC_CLIENT_SECRET go together.")
    if settings.oidc_client_id and not settings.oidc_issuer:
        raise ConfigurationError(
            "CARNET_OIDC_CLIENT_ID needs CARNET_OIDC_ISSUER (the provider's issuer URL)."
        )
    parse_mapping(settings.oidc_claims)
    patient_parts = (
        settings.patient_oidc_issuer,
        settings.patient_oidc_client_id,
        settings.patient_oidc_client_secret,
    )
    if any(patient_parts) and not all(patient_parts):
        raise ConfigurationError(
            "CARNET_PATIENT_OIDC_ISSUER, CARNET_PATIENT_OIDC_CLIENT_ID and CARNET_PATIENT_OIDC_CLIENT_SECRET go together."
        )
    if "openid" not in settings.oidc_scope.split():
        raise ConfigurationError("CARNET_OIDC_SCOPE must include openid.")
    if settings.smtp_security not in ("none", "starttls", "tls"):
        raise ConfigurationError("CARNET_SMTP_SECURITY must be 'none', 'starttls' or 'tls'.")
    if provider == "pkcs11" and not (
        settings.pkcs11_module and settings.pkcs11_token and settings.pkcs11_pin
    ):
        raise ConfigurationError(
            "The pkcs11 key provider needs CARNET_PKCS11_MODULE, CARNET_PKCS11_TOKEN and CARNET_PKCS11_PIN."
        )
    if mode is Mode.PRODUCTION:
        if settings.api_docs:
            raise ConfigurationError("CARNET_API_DOCS is for development: production never serves /docs.")
        if not (settings.oidc_issuer and (settings.oidc_jwks_file or settings.oidc_sign_in_enabled)):
            raise ConfigurationError(
                "Production mode needs CARNET_OIDC_ISSUER and either CARNET_OIDC_CLIENT_ID with "
                "CARNET_OIDC_CLIENT_SECRET (sign-in, keys by discovery) or CARNET_OIDC_JWKS_FILE."
            )
        if settings.key_dir.resolve().is_relative_to(settings.data_dir.resolve()):
            raise ConfigurationError(
                "CARNET_KEY_DIR must not be inside CARNET_DATA_DIR: keys live apart from data."
            )
    return settings
