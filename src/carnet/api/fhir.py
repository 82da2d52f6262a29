"""FHIR R4 REST routes. Each route parses the request, calls the record service, renders."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Request, Response

from carnet.api.auth import TokenVerifier
from carnet.api.capability import capability_statement
from carnet.api.outcome import operation_outcome, outcome_of, status_of
from carnet.auth.confirmation import verify_confirmation
from carnet.domain import fhirjson
from carnet.domain.documents import binary_content, is_simplified_publish
from carnet.domain.errors import InvalidRequest, PayloadTooLarge
from carnet.domain.policy import AccessMode
from carnet.domain.principal import ActorKind, Principal
from carnet.domain.search import MAX_COUNT, parse_date
from carnet.domain.subsetting import parse_elements, parse_summary, subset
from carnet.feeds.devices import is_measure_bundle
from carnet.feeds.mhd import is_provide_bundle, provide_bundle_documents
from carnet.offload import offload
from carnet.services import deadline
from carnet.services.feed_inbox import Published
from carnet.services.measures import SubmittedEntry, submit_measures
from carnet.services.records import (
    EntryRequest,
    EntryResponse,
    EverythingPage,
    Records,
    SearchResult,
    Stored,
    WriteResult,
    instant,
)
from carnet.settings import Settings

FHIR_JSON = "application/fhir+json"
_ACCEPTED_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
#: A media type safe to send as a Content-Type header: type/subtype, then parameters, all printable ASCII.
_MEDIA_TYPE = re.compile(r"[!-~]+/[!-~]+(?: *;[ -~]*)?")

router = APIRouter()
T = TypeVar("T")


def fhir_response(
    body: Mapping[str, Any] | None, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Render a FHIR JSON response."""
    return _json_response(fhirjson.dumps(body) if body is not None else b"", status, headers)


def _json_response(content: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        content=content,
        status_code=status,
        media_type=FHIR_JSON + "; charset=utf-8",
        headers=dict(headers or {}),
    )


async def principal_of(request: Request) -> Principal:
    """The verified caller of a request, with the record a patient holds attached (off the loop).

    A JWT verified lately is known at once (``TokenVerifier.known``); anything else — verifying a
    new token, looking up an app's opaque token (revocation takes effect at the next request), a
    feed's registration, a patient's record by identifier — runs off the event loop, in one
    thread hop (a hop costs ~5 % of a single read). A feed's token must name a registered,
    active feed; it writes the registry's classes.
    """
    verifier: TokenVerifier = request.app.state.verifier
    authorization = request.headers.get("authorization")
    services = request.app.state.services
    known = verifier.known(authorization)
    if known is not None and known.kind is not ActorKind.FEED and not services.records.needs_resolving(known):
        return known
    return await offload(_resolve, services, verifier, authorization, known)


def _resolve(
    services: Any, verifier: TokenVerifier, authorization: str | None, known: Principal | None
) -> Principal:
    """Verify (unless known), then attach a feed's registration or a patient's record (blocking)."""
    principal = known if known is not None else verifier.verify(authorization)
    if principal.kind is ActorKind.FEED:
        principal = services.feeds.principal(principal)
    if services.records.needs_resolving(principal):
        principal = services.records.resolve(principal)
    return principal


async def records_of(request: Request) -> Records:
    """The record access of the caller, in the access mode the request asks for.

    Headers: ``X-Carnet-Mode`` (``normal``, ``treating``, ``break_glass``, ``regulation``,
    ``representative``), ``X-Carnet-Justification`` (break-glass), ``X-Carnet-Confirmation``
    (``sovereign`` break-glass: the token the second professional obtained, signed in as
    themself, from ``POST /fhir/$confirm-break-glass``; ``carnet.auth.confirmation``).

    Raises:
        InvalidRequest: the retired ``X-Carnet-Confirmed-By`` header (a free-text name proves nothing).
        AccessDenied: a confirmation that does not verify for this caller.
    """
    principal = await principal_of(request)
    if request.headers.get("x-carnet-confirmed-by") is not None:
        raise InvalidRequest(
            "X-Carnet-Confirmed-By is no longer accepted: your colleague obtains a confirmation with their "
            "own token (POST /fhir/$confirm-break-glass) and you send it as X-Carnet-Confirmation."
        )
    confirmed_by = None
    presented = request.headers.get("x-carnet-confirmation")
    if presented:
        confirmed_by = verify_confirmation(
            request.app.state.confirmation_key, presented, principal, now=time.time()
        ).professional_id
    raw_mode = request.headers.get("x-carnet-mode", "normal").strip().lower().replace("-", "_")
    try:
        mode = AccessMode(raw_mode)
    except ValueError:
        mode = AccessMode.FEED  # refused just below, with the same message
    if mode is AccessMode.FEED:
        # The feed mode is the feed routes' to set (feed_records_of), never a client's.
        raise InvalidRequest(
            "X-Carnet-Mode must be normal, treating, break_glass, regulation or representative."
        )
    justification = request.headers.get("x-carnet-justification")
    if mode is AccessMode.BREAK_GLASS and not (justification or "").strip():
        # Said for what the request lacks, before any record is named: it reveals nothing that exists.
        raise InvalidRequest(
            "A break-glass access needs a justification: say why it is an emergency in X-Carnet-Justification."
        )
    records: Records = request.app.state.services.records.records(
        principal,
        mode=mode,
        justification=justification,
        confirmed_by=confirmed_by,
    )
    request.state.records = records
    return records


def feed_records_of(request: Request, records: Records) -> Records:
    """The record access of a caller on a feed route: a feed writes in the feed mode there.

    A feed writes only through the feed routes (ITI-105, ``$from-cda``, HL7 v2): everywhere
    else its requests are in the normal mode, which the policy refuses to feeds.
    """
    if records.actor.kind is not ActorKind.FEED:
        return records
    feed_records: Records = request.app.state.services.records.records(records.actor, mode=AccessMode.FEED)
    request.state.records = feed_records
    return feed_records


#: Parameters every interaction takes (FHIR's general parameters; XML is refused in api/formats.py).
GENERAL_PARAMETERS = frozenset({"_format", "_pretty"})


def only_parameters(request: Request, what: str, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse a parameter the interaction does not take (400), rather than ignore it silently.

    Raises:
        InvalidRequest: a query parameter outside FHIR's general ones and ``allowed``.
    """
    if not request.scope.get("query_string"):
        return
    for name in request.query_params:
        if name not in GENERAL_PARAMETERS and name not in allowed:
            raise InvalidRequest(
                f"{what} does not take the parameter {name[:40]!r}; see /fhir/metadata. "
                f"({what} : paramètre {name[:40]!r} non pris en charge.)"
            )


def content_type_of(request: Request) -> str:
    """The media type of a request's body, lower-cased, without its parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request) -> bytes:
    """Read the raw body within the size limit.

    Raises:
        PayloadTooLarge: the declared or actual length exceeds ``Settings.max_body_bytes``.
    """
    limit: int = request.app.state.services.settings.max_body_bytes
    too_large = f"The body is larger than the {limit}-byte limit (CARNET_MAX_BODY_BYTES)."
    declared = (request.headers.get("content-length") or "").lstrip("0")
    # isascii(): isdigit() alone admits "²", which int() refuses; a 19-digit length is too large anyway.
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(too_large)
    chunks = bytearray()
    async for chunk in request.stream():
        deadline.check()  # a body trickled in slowly stops at the request's time budget
        chunks += chunk
        if len(chunks) > limit:
            raise PayloadTooLarge(too_large)
    return bytes(chunks)


async def _form(request: Request) -> list[tuple[str, str]]:
    """Read the parameters of a ``POST _search`` body (``application/x-www-form-urlencoded``).

    Parsed here rather than by Starlette, whose form parser needs python-multipart.

    Raises:
        PayloadTooLarge, InvalidRequest: another content type, or not UTF-8.
    """
    raw = await read_body(request)
    if not raw:
        return []
    if content_type_of(request) != "application/x-www-form-urlencoded":
        raise InvalidRequest("POST _search takes its parameters as application/x-www-form-urlencoded.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The search form is not UTF-8; percent-encode the parameters.") from None
    return parse_qsl(text, keep_blank_values=True)


async def json_body(request: Request) -> dict[str, Any]:
    """Read and parse a JSON resource body within the size limit.

    Raises:
        PayloadTooLarge, InvalidRequest.
    """
    content_type = content_type_of(request)
    if content_type and content_type not in _ACCEPTED_TYPES:
        raise InvalidRequest(
            f"Content-Type {content_type[:60]!r} is not accepted; send application/fhir+json."
        )
    chunks = await read_body(request)
    if not chunks:
        raise InvalidRequest("The request has no body; send a FHIR resource as JSON.")
    parsed = parse_json(request, chunks)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("resourceType"), str):
        raise InvalidRequest("The body must be a JSON object with a resourceType.")
    return parsed


def parse_json(request: Request, raw: bytes) -> Any:
    """Parse a JSON body within the configured depth and size limits.

    Raises:
        InvalidRequest: not JSON, or over a limit.
    """
    return fhirjson.loads(raw, _limits(request.app.state.services.settings))


@functools.cache
def _limits(settings: Settings) -> fhirjson.Limits:
    return fhirjson.Limits(
        max_depth=settings.max_depth,
        max_elements=settings.max_elements,
        max_resource_elements=settings.max_resource_elements,
        max_bundle_entries=settings.max_bundle_entries,
    )


def _base(request: Request) -> str:
    base: str = request.app.state.services.settings.base_url
    return base


def _version_headers(stored: Stored, base: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Location": f"{base}/{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}",
    }


def _prefer_minimal(request: Request) -> bool:
    return "return=minimal" in request.headers.get("prefer", "")


def _lenient(request: Request) -> bool:
    return "handling=lenient" in request.headers.get("prefer", "")


def write_response(request: Request, result: WriteResult) -> Response:
    """Answer a create or update: 201 or 200, the version headers, the resource unless ``Prefer: return=minimal``."""
    stored = result.stored
    headers = _version_headers(stored, _base(request))
    status = 201 if result.created else 200
    return fhir_response(
        None if _prefer_minimal(request) else stored.resource, status=status, headers=headers
    )


OFFERED = (
    "The patient asked to decide first: the document waits for their decision, nothing of it is "
    "in the record yet (offer {offer}). (Le patient a demandé à décider d'abord : le document "
    "attend sa décision, rien n'est encore dans le dossier.)"
)


def published_response(request: Request, published: Published) -> Response:
    """Answer a feed's write: as a create once stored, 202 with an OperationOutcome while it waits."""
    if published.result is not None:
        return write_response(request, published.result)
    message = OFFERED.format(offer=published.offer_id)
    return fhir_response(operation_outcome("informational", message, severity="information"), status=202)


async def _provide_bundle(request: Request, records: Records, body: dict[str, Any]) -> Response:
    """A feed's ITI-65 Provide Document Bundle: each document published (or offered) as by ITI-105.

    Every document is read before any is stored (a malformed Bundle stores nothing); each is then
    its own publish, answered in the entry of its DocumentReference (201, or 202 while it waits).
    """
    documents = provide_bundle_documents(body)
    records = feed_records_of(request, records)
    inbox = request.app.state.services.feed_inbox
    answers = iter([await offload(inbox.publish, records, document) for document in documents])
    out: list[dict[str, Any]] = []
    for entry in body["entry"]:
        if (entry.get("resource") or {}).get("resourceType") != "DocumentReference":
            out.append({"response": {"status": "201 Created"}})
            continue
        published = next(answers)
        if published.result is None:
            outcome = operation_outcome(
                "informational", OFFERED.format(offer=published.offer_id), severity="information"
            )
            out.append({"response": {"status": "202 Accepted", "outcome": outcome}})
        else:
            out.append(
                _entry_response(
                    request,
                    EntryResponse(
                        status=201 if published.result.created else 200,
                        location=_location(published.result.stored),
                        stored=published.result.stored,
                    ),
                    False,
                )
            )
    return fhir_response({"resourceType": "Bundle", "type": "transaction-response", "entry": out})


def _location(stored: Stored) -> str:
    return f"{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"


def _match_entry(
    base: str, stored: Stored, summary: str | None = None, elements: frozenset[str] | None = None
) -> dict[str, Any]:
    """A searchset entry carrying the stored JSON as is (no parse, no re-serialisation).

    With ``_summary`` or ``_elements`` the resource is parsed and cut (``domain.subsetting``).
    """
    resource: Any = orjson.Fragment(stored.json or b"{}")
    if (summary not in (None, "false") or elements) and stored.resource is not None:
        resource = subset(stored.resource, summary=summary, elements=elements)
    return {
        "fullUrl": f"{base}/{stored.resource_type}/{stored.resource_id}",
        "resource": resource,
        "search": {"mode": "match"},
    }


def _search_bundle(request: Request, result: SearchResult, path: str) -> dict[str, Any]:
    base = _base(request)
    query = result.query
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]

    def link(relation: str, offset: int) -> dict[str, str]:
        return {
            "relation": relation,
            "url": f"{base}/{path}?{urlencode([*params, ('_offset', str(offset))])}",
        }

    links = [link("self", query.offset)]
    if not query.summary_count and query.offset + query.count < result.total and query.count > 0:
        links.append(link("next", query.offset + query.count))
    if query.offset > 0 and not query.summary_count:
        links.append(link("previous", max(0, query.offset - max(query.count, 1))))
    entries: list[dict[str, Any]] = [
        _match_entry(base, stored, query.summary, query.elements) for stored in result.entries
    ]
    for stored in result.included:
        entries.append(
            {**_match_entry(base, stored, query.summary, query.elements), "search": {"mode": "include"}}
        )
    if query.ignored:
        outcome = operation_outcome(
            "not-supported",
            "Ignored unsupported search parameters: " + ", ".join(query.ignored[:10]),
            severity="warning",
        )
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": result.total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def _history_bundle(request: Request, versions: Sequence[Stored], count: int | None) -> dict[str, Any]:
    base = _base(request)
    shown = versions[:count] if count is not None else versions
    entries = []
    for stored in shown:
        url = f"{stored.resource_type}/{stored.resource_id}"
        entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
        if stored.json is not None:
            entry["resource"] = orjson.Fragment(stored.json)
        method = "DELETE" if stored.json is None else ("POST" if stored.version_id == 1 else "PUT")
        entry["request"] = {"method": method, "url": url if method != "POST" else stored.resource_type}
        entry["response"] = {
            "status": "204" if method == "DELETE" else ("201" if method == "POST" else "200"),
            "etag": stored.etag,
            "lastModified": instant(stored.last_updated),
        }
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": len(versions)}
    if entries:
        bundle["entry"] = entries
    return bundle


def _history_params(request: Request) -> tuple[str | None, datetime | None, int | None]:
    patient: str | None = None
    since: datetime | None = None
    count: int | None = None
    for name, value in request.query_params.multi_items():
        if name in ("patient", "subject"):
            patient = value.removeprefix("Patient/")
        elif name == "_since":
            since = parse_date(value).low
        elif name == "_count":
            digits = value.lstrip("0") or "0"
            if not (value.isascii() and value.isdigit()):  # isdigit() alone admits "²"
                raise InvalidRequest("_count must be a whole number.")
            count = int(digits) if len(digits) <= 12 else None  # more versions than any resource has
        elif name in ("_format", "_pretty"):
            continue
        else:
            raise InvalidRequest(
                f"History does not support the parameter {name[:40]!r}; use _since, _count, patient."
            )
    return patient, since, count


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """Return the CapabilityStatement (no authentication needed; built once per process)."""
    return _json_response(_capability_bytes(_base(request)))


@functools.cache
def _capability_bytes(base: str) -> bytes:
    return fhirjson.dumps(capability_statement(base))


@router.post("")
@router.post("/")
async def bundle(request: Request) -> Response:
    """Process a transaction or batch Bundle."""
    # Authenticate first: an anonymous caller gets 401, never feedback on its body.
    records = await records_of(request)
    only_parameters(request, "A transaction or batch")
    body = await json_body(request)
    if body.get("resourceType") != "Bundle" or body.get("type") not in ("transaction", "batch"):
        raise InvalidRequest("POST /fhir takes a Bundle of type transaction or batch.")
    feed = records.actor.kind is ActorKind.FEED
    if feed and body["type"] == "transaction" and is_provide_bundle(body):
        return await _provide_bundle(request, records, body)
    if body["type"] == "transaction" and is_measure_bundle(body):
        # A connected device's measures (ANS « Mesures de santé »): checked against the profiles.
        service = request.app.state.services.records
        if feed:  # a device feed's route: its measure types, the patient's choice for it
            records = feed_records_of(request, records)
            inbox = request.app.state.services.feed_inbox
            done = await offload(inbox.submit, records, body)
            if isinstance(done, Published):
                return published_response(request, done)
            submitted: list[SubmittedEntry] = done
        else:
            submitted = await offload(submit_measures, service, records.actor, body, mode=records.mode)
        out = [
            _entry_response(
                request,
                EntryResponse(
                    status=201 if entry.created else 200,
                    location=f"{entry.stored.resource_type}/{entry.stored.resource_id}/_history/{entry.stored.version_id}",
                    stored=entry.stored,
                ),
                False,
            )
            for entry in submitted
        ]
        return fhir_response({"resourceType": "Bundle", "type": "transaction-response", "entry": out})
    entries = parse_entries(body)
    if body["type"] == "transaction":
        responses = await offload(records.transaction, entries)
        kind = "transaction-response"
    else:
        responses = await offload(records.batch, entries)
        kind = "batch-response"
    representation = "return=representation" in request.headers.get("prefer", "")
    out = [_entry_response(request, r, representation) for r in responses]
    return fhir_response({"resourceType": "Bundle", "type": kind, "entry": out})


def _entry_response(request: Request, response: EntryResponse, representation: bool) -> dict[str, Any]:
    if response.error is not None:
        status = status_of(response.error)
        return {"response": {"status": str(status), "outcome": outcome_of(response.error)}}
    entry: dict[str, Any] = {}
    reply: dict[str, Any] = {"status": str(response.status)}
    if response.location:
        reply["location"] = response.location
    if response.stored is not None:
        reply["etag"] = response.stored.etag
        reply["lastModified"] = instant(response.stored.last_updated)
        if (representation or response.location is None) and response.stored.resource is not None:
            entry["resource"] = response.stored.resource
    if response.search is not None:
        entry["resource"] = _search_bundle(request, response.search, response.search.query.resource_type)
    entry["response"] = reply
    return entry


def parse_entries(body: Mapping[str, Any]) -> list[EntryRequest]:
    """Turn a Bundle's entries into typed requests.

    Raises:
        InvalidRequest: an entry without a request, or with a bad method or resource.
    """
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be a list.")
    entries: list[EntryRequest] = []
    for index, raw in enumerate(raw_entries):
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise InvalidRequest(
                f"Entry {index} has no request; each entry needs request.method and request.url."
            )
        req = raw["request"]
        method, url = req.get("method"), req.get("url")
        if method not in ("GET", "POST", "PUT", "DELETE") or not isinstance(url, str) or not url:
            raise InvalidRequest(
                f"Entry {index}: request.method must be GET, POST, PUT or DELETE, with a url."
            )
        resource = raw.get("resource")
        if resource is not None and not (
            isinstance(resource, dict) and isinstance(resource.get("resourceType"), str)
        ):
            raise InvalidRequest(f"Entry {index}: resource must be a FHIR resource object.")
        if method in ("POST", "PUT") and resource is None:
            raise InvalidRequest(f"Entry {index}: a {method} entry needs a resource.")
        full_url = raw.get("fullUrl")

        def text(value: Any) -> str | None:
            return value if isinstance(value, str) else None

        entries.append(
            EntryRequest(
                method=method,
                url=url,
                resource=resource,
                full_url=text(full_url),
                if_match=text(req.get("ifMatch")),
                if_none_exist=text(req.get("ifNoneExist")),
            )
        )
    return entries


@router.get("/{resource_type}/_history")
async def type_history(resource_type: str, request: Request) -> Response:
    """History of a type within one record (``?patient=``)."""
    records = await records_of(request)
    patient, since, count = _history_params(request)
    versions = await offload(records.history, resource_type, None, patient, since)
    return fhir_response(_history_bundle(request, versions, count))


@router.get("/{resource_type}")
async def search_get(resource_type: str, request: Request) -> Response:
    """Search (GET)."""
    records = await records_of(request)
    params = list(request.query_params.multi_items())
    result = await offload(records.search, resource_type, params, lenient=_lenient(request))
    return fhir_response(_search_bundle(request, result, resource_type))


@router.post("/{resource_type}/_search")
async def search_post(resource_type: str, request: Request) -> Response:
    """Search (POST with form parameters)."""
    records = await records_of(request)
    params = await _form(request)
    params += list(request.query_params.multi_items())
    result = await offload(records.search, resource_type, params, lenient=_lenient(request))
    return fhir_response(_search_bundle(request, result, resource_type))


@router.post("/{resource_type}")
async def create(resource_type: str, request: Request) -> Response:
    """Create (server-assigned id), conditionally with ``If-None-Exist``."""
    records = await records_of(request)
    # A create takes no search parameters: fhirpy's get_or_create sends its criteria so, and a
    # server ignoring them creates duplicates. Conditional create is If-None-Exist.
    only_parameters(request, "A create (use If-None-Exist for a conditional create)")
    body = await json_body(request)
    if body.get("resourceType") != resource_type:
        raise InvalidRequest(
            f"The body is a {str(body.get('resourceType'))[:64]}, posted to /fhir/{resource_type[:64]}."
        )
    if resource_type == "DocumentReference" and is_simplified_publish(body):
        records = feed_records_of(request, records)
        if records.actor.kind is ActorKind.FEED:
            inbox = request.app.state.services.feed_inbox
            return published_response(request, await offload(inbox.publish, records, body))
        return write_response(request, await offload(records.publish, body))
    if resource_type == "MedicationDispense" and records.actor.kind is ActorKind.FEED:
        # A pharmacy feed's dispensation (class 43), on its feed route like a document.
        records = feed_records_of(request, records)
        inbox = request.app.state.services.feed_inbox
        return published_response(request, await offload(inbox.create, records, body))
    result = await offload(records.create, body, if_none_exist=request.headers.get("if-none-exist"))
    return write_response(request, result)


@router.get("/Patient/{patient_id}/$everything")
async def everything(patient_id: str, request: Request) -> Response:
    """Return a patient's whole record as a searchset Bundle, paged with ``_count`` (``next`` links).

    ``_type`` (comma-separated types) and ``_since`` (an instant: what changed since) narrow it.
    """
    records = await records_of(request)
    only_parameters(request, "$everything", frozenset({"_count", "_offset", "_type", "_since"}))
    page = _everything_page(request)
    resources, total = await offload(records.everything_page, patient_id, page)
    base = _base(request)
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
    url = f"{base}/Patient/{patient_id}/$everything"

    def link(relation: str, offset: int) -> dict[str, str]:
        query = urlencode([*params, *([("_offset", str(offset))] if offset else [])])
        return {"relation": relation, "url": f"{url}?{query}" if query else url}

    links = [link("self", page.offset)]
    if page.count is not None and page.count > 0 and page.offset + page.count < total:
        links.append(link("next", page.offset + page.count))
    if page.offset > 0:
        links.append(link("previous", max(0, page.offset - max(page.count or 0, 1))))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    if resources:
        bundle["entry"] = [_match_entry(base, stored) for stored in resources]
    return fhir_response(bundle)


def _whole(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise InvalidRequest(f"{name} must be a whole number. ({name} doit être un nombre entier.)")
    return int(value)


def _everything_page(request: Request) -> EverythingPage:
    """The ``_type``, ``_since``, ``_count`` and ``_offset`` of a ``$everything`` request.

    Raises:
        InvalidRequest: a malformed value.
    """
    types: set[str] | None = None
    since: datetime | None = None
    count: int | None = None
    offset = 0
    for name, value in request.query_params.multi_items():
        if name == "_type":
            types = (types or set()) | {t.strip() for t in value.split(",") if t.strip()}
        elif name == "_since":
            since = parse_date(value).low
        elif name == "_count":
            count = min(_whole(name, value), MAX_COUNT)
        elif name == "_offset":
            offset = _whole(name, value)
    return EverythingPage(
        types=frozenset(types) if types is not None else None, since=since, offset=offset, count=count
    )


@router.get("/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, request: Request) -> Response:
    """Read the current version; a Binary comes back as its raw content unless FHIR JSON is asked for (ITI-68)."""
    records = await records_of(request)
    only_parameters(request, "A read", frozenset({"_summary", "_elements"}))
    stored = await offload(records.read, resource_type, resource_id)
    headers = _version_headers(stored, _base(request))
    headers.pop("Location")
    summary = request.query_params.get("_summary")
    elements = request.query_params.getlist("_elements")
    if (summary is not None or elements) and stored.resource is not None:
        cut = subset(
            stored.resource,
            summary=parse_summary(summary) if summary is not None else None,
            elements=parse_elements(elements) if elements else None,
        )
        return fhir_response(cut, headers=headers)
    if resource_type == "Binary" and stored.resource is not None and not _wants_fhir(request):
        content_type = str(stored.resource.get("contentType") or "")
        if not _MEDIA_TYPE.fullmatch(content_type):
            # A FHIR code may hold any Unicode; a header value must be plain printable ASCII.
            content_type = "application/octet-stream"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Content-Security-Policy"] = "sandbox"
        return Response(content=binary_content(stored.resource), media_type=content_type, headers=headers)
    return _raw_response(stored, headers)


def _raw_response(stored: Stored, headers: Mapping[str, str], status: int = 200) -> Response:
    """Send a stored resource's JSON bytes as they are."""
    return _json_response(stored.json or b"", status, headers)


def _wants_fhir(request: Request) -> bool:
    """Tell whether the client asked for the FHIR JSON representation (Accept or _format)."""
    accept = request.headers.get("accept", "").lower()
    requested = request.query_params.get("_format", "")
    return "json" in accept or "json" in requested


@router.put("/{resource_type}/{resource_id}")
async def update(resource_type: str, resource_id: str, request: Request) -> Response:
    """Update an existing resource (``If-Match`` for optimistic locking)."""
    records = await records_of(request)
    only_parameters(request, "An update")
    body = await json_body(request)
    result = await offload(
        records.update, resource_type, resource_id, body, if_match=request.headers.get("if-match")
    )
    return write_response(request, result)


@router.delete("/{resource_type}/{resource_id}")
async def delete(resource_type: str, resource_id: str, request: Request) -> Response:
    """Delete logically."""
    records = await records_of(request)
    only_parameters(request, "A delete")
    await offload(records.delete, resource_type, resource_id)
    return Response(status_code=204)


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(resource_type: str, resource_id: str, request: Request) -> Response:
    """Every version of one resource."""
    records = await records_of(request)
    _, since, count = _history_params(request)
    versions = await offload(records.history, resource_type, resource_id, None, since)
    return fhir_response(_history_bundle(request, versions, count))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(resource_type: str, resource_id: str, version_id: str, request: Request) -> Response:
    """Read one version."""
    records = await records_of(request)
    only_parameters(request, "A vread")
    stored = await offload(records.vread, resource_type, resource_id, version_id)
    headers = _version_headers(stored, _base(request))
    headers.pop("Location")
    return _raw_response(stored, headers)
