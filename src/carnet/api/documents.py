"""Document submission routes: a CDA R2 document sent alone, its metadata read from its header.

``POST /fhir/DocumentReference/$from-cda`` takes the raw CDA (``application/xml``, ``text/xml`` or
``application/hl7-cda+xml``), parses it safely, finds the record of the patient whose INS it names
among the records the caller may read, derives the DocumentReference from the header and
publishes it as an IHE MHD Simplified Publish (ITI-105) would: the answer is that of a create.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response

from carnet.api.fhir import (
    content_type_of,
    feed_records_of,
    published_response,
    read_body,
    records_of,
    write_response,
)
from carnet.domain.documents import master_identifier
from carnet.domain.errors import InvalidRequest, InvalidResource
from carnet.domain.principal import ActorKind
from carnet.feeds.cda import CDADocument, parse_cda
from carnet.feeds.cda_metadata import document_reference_from_cda, master_identifier_for
from carnet.offload import offload
from carnet.services.records import Records

CDA_MEDIA_TYPES = ("application/xml", "text/xml", "application/hl7-cda+xml")

# An INS (NIR or NIA) is 15 characters: digits, with 2A or 2B for Corsica. Anything else is
# refused before it reaches a search, where ',' or '|' would change the query's meaning.
_INS_VALUE = re.compile(r"[0-9A-Za-z]{1,20}", re.ASCII)

_NO_RECORD = (
    "There is no record for this patient's INS among the records you may access; open "
    "the record first (POST /fhir/Patient with the INS) or check the INS in the document."
)

router = APIRouter()


@router.post("/DocumentReference/{document_id}/$archive")
async def archive(document_id: str, request: Request) -> Response:
    """Archive a document (DMP "archiver"): hidden from nothing, tagged ``archived``."""
    records = await records_of(request)
    return write_response(request, await offload(records.archive, document_id, archived=True))


@router.post("/DocumentReference/{document_id}/$unarchive")
async def unarchive(document_id: str, request: Request) -> Response:
    """Take a document out of the archive."""
    records = await records_of(request)
    return write_response(request, await offload(records.archive, document_id, archived=False))


@router.post("/DocumentReference/$from-cda")
async def from_cda(request: Request) -> Response:
    """Publish a CDA R2 document into its patient's record, deriving its metadata from its header."""
    # Authenticate first: an anonymous caller gets 401, never feedback on its body.
    records = feed_records_of(request, await records_of(request))
    content_type = content_type_of(request)
    if content_type not in CDA_MEDIA_TYPES:
        raise InvalidRequest(
            f"Content-Type {content_type[:60]!r} is not accepted here; send the CDA document as "
            "application/xml, text/xml or application/hl7-cda+xml."
        )
    raw = await read_body(request)
    limit: int = request.app.state.services.settings.max_body_bytes
    cda = await offload(parse_cda, raw, max_bytes=limit)
    document = await offload(_document_for, records, cda, raw)
    if records.actor.kind is ActorKind.FEED:
        inbox = request.app.state.services.feed_inbox
        return published_response(request, await offload(inbox.publish, records, document))
    return write_response(request, await offload(records.publish, document))


def _document_for(records: Records, cda: CDADocument, raw: bytes) -> dict[str, Any]:
    """Build the DocumentReference of a parsed CDA, placed in its patient's record.

    A document that replaces another (``relatedDocument[@typeCode='RPLC']``) already in the
    record relates to it, so that publishing it supersedes the older version; a parent that is
    not in the record (another server's, or never shared) leaves the new document standing alone.

    Raises:
        InvalidResource: the CDA names no INS, or no record the caller may read has it.
    """
    patient_id = _record_of(records, cda)
    document = document_reference_from_cda(cda, raw, patient_id=patient_id)
    if cda.replaces is not None and records.actor.kind is not ActorKind.FEED:
        parent = _document_with(records, patient_id, master_identifier_for(cda.replaces))
        if parent is not None:
            target = {"reference": f"DocumentReference/{parent}"}
            document["relatesTo"] = [{"code": "replaces", "target": target}]
    return document


def _record_of(records: Records, cda: CDADocument) -> str:
    """Return the id of the one record, visible to the caller, that carries the CDA's INS.

    Raises:
        InvalidResource: no INS in the document, or no such record.
    """
    ins = cda.ins
    where = ("ClinicalDocument.recordTarget.patientRole.id",)
    if ins is None or ins.extension is None or not _INS_VALUE.fullmatch(ins.extension):
        raise InvalidResource(
            "The CDA document names no INS in recordTarget/patientRole/id (NIR or NIA root with "
            "the INS as extension); add the patient's INS and resend it.",
            expression=where,
        )
    system = f"urn:oid:{ins.root}"
    if records.actor.kind is ActorKind.FEED:
        # A feed never reads: it finds the record by the identity index and only writes into it.
        patient_id = records.record_with(system, ins.extension)
        if patient_id is None:
            raise InvalidResource(_NO_RECORD, expression=where)
        return patient_id
    found = records.search("Patient", [("identifier", f"{system}|{ins.extension}")])
    if not found.resources:
        raise InvalidResource(_NO_RECORD, expression=where)
    return str(found.resources[0]["id"])


def _document_with(records: Records, patient_id: str, unique: dict[str, str]) -> str | None:
    """Return the id of the record's DocumentReference whose masterIdentifier is ``unique``."""
    found = records.search(
        "DocumentReference",
        [("patient", f"Patient/{patient_id}"), ("identifier", f"{unique['system']}|{unique['value']}")],
    )
    wanted = (unique["system"], unique["value"])
    for document in found.resources:
        if master_identifier(document) == wanted:
            return str(document["id"])
    return None
