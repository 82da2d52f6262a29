"""The database schema (SQLAlchemy Core). Every table carries ``patient_id``, the Citus
distribution column; nothing but opaque ids, types, versions, server timestamps, sealed
bytes and keyed hashes is stored."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

ID = String(64)

patient_keys = Table(
    "patient_keys",
    metadata,
    Column("patient_id", ID, primary_key=True),
    Column("kek_id", String(64), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    # The id of the record's erasure share in the key directory (crypto/shares.py); NULL for a
    # key made before migration 0004 until `carnet keys rotate` gives it one, and once shredded.
    Column("share_id", LargeBinary(16), nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
)

resources = Table(
    "resources",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("patient_id", "resource_type", "resource_id"),
)

#: Which record holds each resource, found by its id alone (a read by bare id, an update, a
#: reference to check): written in the transaction that creates the resource and never changed (a
#: resource does not move). On Citus it is distributed on ``resource_id``, so finding a record is
#: one probe on one shard instead of one on every shard of ``resources`` (migration 0016).
resource_locations = Table(
    "resource_locations",
    metadata,
    Column("resource_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("patient_id", ID, nullable=False),
    PrimaryKeyConstraint("resource_id", "resource_type"),
)

#: Where each resource whose id starts with a journal log's key (``<key>.<uuid>``: the ids drawn on
#: Citus, :meth:`carnet.store.journal_logs.JournalLogs.id_prefix`) is, keyed by that key. On Citus
#: it is distributed on ``log_key`` beside the records: the key hashes into the record's shard, so
#: a create writes its location in its record's shard group, and a read by bare id parses the key
#: and probes that one shard (migration 0023). Ids without a key stay in ``resource_locations``.
resource_places = Table(
    "resource_places",
    metadata,
    Column("log_key", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("patient_id", ID, nullable=False),
    PrimaryKeyConstraint("log_key", "resource_id", "resource_type"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("sealed", LargeBinary, nullable=True),
    PrimaryKeyConstraint("patient_id", "resource_type", "resource_id", "version_id"),
)

search_tokens = Table(
    "search_tokens",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", ID, nullable=False),
    Column("param", String(64), nullable=False),
    Column("value_hash", LargeBinary(16), nullable=False),
    Index("ix_search_tokens_lookup", "patient_id", "resource_type", "param", "value_hash"),
    Index("ix_search_tokens_resource", "patient_id", "resource_type", "resource_id"),
)

identities = Table(
    "identities",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("value_hash", LargeBinary(16), nullable=False),
    PrimaryKeyConstraint("value_hash", "patient_id"),
    Index("ix_identities_patient", "patient_id"),
)


# -- the access journal (DESIGN §5) ------------------------------------------------------
# One Merkle log per shard (patient hash → shard). An entry's content is sealed with the
# patient key; ``commitment`` is SHA-256(salt || content), the salt sealed with the content.
# ``log_key`` says where a log lives, ``shard`` which log it is: the key is the log number in
# decimal on SQLite and plain PostgreSQL, and on Citus a token of ``journal_logs`` that hashes
# into the log's shard of the record group (the journal is co-located with the records, so a
# record's entries and its log's head sit in the record's own shard group, migration 0022).

#: On Citus, each log's placement key (one row per log; empty on a single-node store).
journal_logs = Table(
    "journal_logs",
    metadata,
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("log_key", ID, nullable=False),
    # A log of the store before ``carnet db distribute`` (records were assigned by SHA-256 then).
    Column("legacy", Boolean, nullable=False),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("log_key", ID, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("patient_id", ID, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("commitment", LargeBinary(32), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    PrimaryKeyConstraint("log_key", "shard", "seq"),
    Index("ix_journal_entries_patient", "patient_id", "recorded_at"),
)

#: Every perfect subtree hash of each shard's tree (level 0 = leaf hashes), for proofs.
journal_nodes = Table(
    "journal_nodes",
    metadata,
    Column("log_key", ID, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("log_key", "shard", "level", "idx"),
)

#: The head of each shard's tree: its size and compact-range peaks (32 bytes each, concatenated).
journal_heads = Table(
    "journal_heads",
    metadata,
    Column("log_key", ID, primary_key=True),
    # The log number, always written by Carnet: no sequence (migration 0019).
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("peaks", LargeBinary, nullable=False),
)

#: Signed checkpoints (C2SP signed notes), one per issued tree head.
journal_checkpoints = Table(
    "journal_checkpoints",
    metadata,
    Column("log_key", ID, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("note", LargeBinary, nullable=False),
    PrimaryKeyConstraint("log_key", "shard", "size"),
)

#: Witness cosignatures of checkpoints (C2SP tlog-cosignature lines), one per witness and checkpoint.
journal_cosignatures = Table(
    "journal_cosignatures",
    metadata,
    Column("log_key", ID, nullable=False),
    Column("shard", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("witness", String(255), nullable=False),
    Column("cosigned_at", DateTime(timezone=True), nullable=False),
    Column("line", Text, nullable=False),
    PrimaryKeyConstraint("log_key", "shard", "size", "witness"),
)

#: Which actors (keyed hashes) already accessed a record, for "new professional" notices.
journal_actors = Table(
    "journal_actors",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("actor_hash", LargeBinary(16), nullable=False),
    PrimaryKeyConstraint("patient_id", "actor_hash"),
)

# -- notifications (DESIGN §9) -------------------------------------------------------------

#: Messages to deliver, written in the transaction of the event; ``sealed`` holds the
#: payload (recipient, kind of event, who, when, mode) sealed with the patient key. The kind
#: is not in clear (migration 0006 dropped the ``event`` column).
outbox = Table(
    "outbox",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("message_id", ID, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("last_error", String(200), nullable=True),
    # When the patient marked the notice read in the portal's notification centre (0012).
    Column("read_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("patient_id", "message_id"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

#: A professional's unread secure messages (« messagerie »): one row per message a patient wrote
#: to them, found by a keyed hash of the professional's idNat_PS (never in clear); ``sealed`` holds
#: who wrote and which message, sealed with the patient key. Read by the professional's inbox.
message_notices = Table(
    "message_notices",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("notice_id", ID, nullable=False),
    Column("recipient_hash", LargeBinary(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("read_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("patient_id", "notice_id"),
    Index("ix_message_notices_recipient", "recipient_hash", "created_at"),
)

#: A patient's notification choices, sealed with the patient key.
notification_preferences = Table(
    "notification_preferences",
    metadata,
    Column("patient_id", ID, primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Portal sessions, kept server-side: the cookie holds only a random id; the row is found by its
#: SHA-256 and holds the session's content sealed with a key derived from the id itself, so the
#: database alone reads nothing of it. Signing out deletes the row; expired rows are pruned.
#: Not patient data (a Citus reference table, like the heads).
portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("sid_hash", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# -- built-in patient accounts (issue 12) -----------------------------------------------------

#: A patient's sign-in credentials when no patient OpenID provider is configured
#: (``carnet.services.patient_accounts``). ``kind`` is ``enrolment`` (a desk-issued one-time code,
#: ``credential_key`` its SHA-256), ``passkey`` (``credential_key`` a hash of the WebAuthn credential id,
#: ``secret`` its COSE public key), ``recovery`` (a one-time code's SHA-256) or ``totp``
#: (``secret`` sealed with the record's key). One-time rows are deleted when used.
patient_credentials = Table(
    "patient_credentials",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("credential_key", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("secret", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Index("ix_patient_credentials_key", "credential_key"),
)

#: Legal representatives (issue 12): one row per link between a representative and a record they
#: represent. ``representative_key`` is who they are when they sign in — ``record:<their own
#: record id>``, ``oidc:<SHA-256 of issuer and subject>`` (``carnet.services.identity_links``),
#: or ``code:<SHA-256 of a one-time claim code>`` until they claim it (``expires_at``);
#: ``basis`` the legal basis (``parent``, ``tutelle``, ``habilitation-familiale``); ``details``
#: the representative's name, sealed with the represented record's key.
representations = Table(
    "representations",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("link_id", String(64), primary_key=True),
    Column("representative_key", String(128), nullable=False),
    Column("basis", String(32), nullable=False),
    Column("details", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Index("ix_representations_key", "representative_key"),
)

# -- feeds (issue 13) ------------------------------------------------------------------------

#: The registered feeds (systems that write into records): not patient data (a Citus reference
#: table). ``classes`` is the comma-separated DMP classCodes the feed may write; ``secret_hash``
#: the SHA-256 of its secret (the secret itself is shown once, never stored).
feeds = Table(
    "feeds",
    metadata,
    Column("feed_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("classes", String(64), nullable=False),
    Column("sender", String(200), nullable=True),
    Column("secret_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The SHA-256 (hex) of the client certificate it presents to the MLLP listener over TLS (0020).
    Column("certificate", String(64), nullable=True),
)

# Apps connected by SMART on FHIR (migration 0009): a reference table of clients; codes and tokens
# by their SHA-256 hash only, with the record they were granted on.
app_clients = Table(
    "app_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=True),
    Column("redirect_uris", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("jwks", Text, nullable=True),
    Column("acts_as", String(80), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

app_codes = Table(
    "app_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("patient_id", ID, nullable=False),
    Column("subject", String(200), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=True),
    Column("code_challenge_method", String(16), nullable=True),
    Column("nonce", String(200), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    # The end of the patient's grant the code stands for (migration 0018; None: until revoked).
    Column("grant_until", DateTime(timezone=True), nullable=True),
)

app_tokens = Table(
    "app_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("family", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("patient_id", ID, nullable=True),
    Column("subject", String(200), nullable=False),
    Column("scope", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # The end of the patient's grant (migration 0018): no token of the grant outlives it.
    Column("grant_until", DateTime(timezone=True), nullable=True),
    Index("ix_app_tokens_family", "family"),
    Index("ix_app_tokens_client_patient", "client_id", "patient_id"),
)

#: Each backend service's client assertion (``private_key_jwt``) taken, by the SHA-256 of its
#: client id and ``jti`` (migration 0018): shared by every process, so that an assertion is
#: accepted once across workers; a row is kept until the assertion could no longer verify.
app_assertions = Table(
    "app_assertions",
    metadata,
    Column("jti_hash", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_app_assertions_expires_at", "expires_at"),
)

#: Each feed message taken (one row per feed and MSH-10): a message sent again gets the answer of
#: the first time (``ack``: the technical ACK, which names no patient), so nothing is stored twice.
feed_messages = Table(
    "feed_messages",
    metadata,
    Column("feed_id", String(64), nullable=False),
    Column("control_id", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("ack", LargeBinary, nullable=False),
    # SHA-256 of what the message says after MSH (carnet.feeds.hl7v2.content_digest): a message
    # sent again with the same MSH-10 and this digest is a resend; another digest is a new message.
    Column("digest", LargeBinary(32), nullable=True),
    PrimaryKeyConstraint("feed_id", "control_id"),
)

#: Messages a feed sent that could not be taken, kept for an operator: the metadata in clear (no
#: patient data: ids, type, HL7 error code and text), the message itself sealed (AES-256-GCM
#: under the reserved directory key, bound to the letter's id). ``status``: open, replayed.
feed_dead_letters = Table(
    "feed_dead_letters",
    metadata,
    Column("letter_id", String(64), primary_key=True),
    Column("feed_id", String(64), nullable=False),
    Column("control_id", String(64), nullable=False),
    Column("message_type", String(32), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("error_code", String(16), nullable=False),
    Column("error", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Index("ix_feed_dead_letters_status", "status", "received_at"),
)

# -- research (issue 15) ---------------------------------------------------------------------

#: The registered research studies (not patient data: a Citus reference table). ``registration``
#: is the study's JSON (carnet/research/study.py). The study key is a key of ``patient_keys``
#: under the reserved id ``_study-<id>`` (wrapped by the KEK with an erasure share, rotated with
#: the record keys, shredded when the study is withdrawn).
research_studies = Table(
    "research_studies",
    metadata,
    Column("study_id", ID, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("registration", Text, nullable=False),
    Column("registered_by", String(200), nullable=False),
    Column("approved_by", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: Bulk exports (a study's, or a patient's own): their state, what was asked, what came out.
#: The output is sealed in ``export_parts`` under the export's own key, a key of ``patient_keys``
#: under the reserved id ``_export-<id>``: shredding it destroys the output.
exports = Table(
    "exports",
    metadata,
    Column("export_id", ID, primary_key=True),
    Column("study_id", ID, nullable=True),
    Column("owner", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),
    Column("progress", String(200), nullable=False),
    Column("summary", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

#: The NDJSON output of an export, by part (≈ 1 MB of lines of one resource type), sealed.
export_parts = Table(
    "export_parts",
    metadata,
    Column("export_id", ID, nullable=False),
    Column("part", Integer, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("lines", Integer, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    PrimaryKeyConstraint("export_id", "part"),
)

#: The privacy-budget ledger of each study: one row per answered aggregate question.
research_ledger = Table(
    "research_ledger",
    metadata,
    Column("study_id", ID, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("asked_at", DateTime(timezone=True), nullable=False),
    Column("asked_by", String(200), nullable=False),
    Column("question", Text, nullable=False),
    Column("epsilon", Float, nullable=False),
    PrimaryKeyConstraint("study_id", "seq"),
)

#: Documents a feed offered that wait for the patient's decision (« me demander d'abord »): the
#: document sealed with the patient key (bound to the offer's id); accepted, it is published and
#: the row deleted; refused, the row is deleted and nothing of the document stays.
feed_offers = Table(
    "feed_offers",
    metadata,
    Column("patient_id", ID, nullable=False),
    Column("offer_id", String(64), nullable=False),
    Column("feed_id", String(64), nullable=False),
    Column("class_code", String(8), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    PrimaryKeyConstraint("patient_id", "offer_id"),
)
