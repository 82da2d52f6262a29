"""IHE MHD Provide Document Bundle (ITI-65) as a feed sends it: its documents, one Simplified Publish each.

A feed's ITI-65 is a ``transaction`` Bundle declaring one of the MHD ProvideBundle profiles
(Minimal, Comprehensive, UnContained), holding a SubmissionSet (``List``), one or more
``DocumentReference`` and, for each, the ``Binary`` its attachment names by ``fullUrl``. Carnet
takes it as the feed route it is: each document becomes the Simplified Publish (ITI-105) of the
same DocumentReference with its Binary's bytes inline, and is published by the same use case
(registered classes, the patient's choice per feed). The SubmissionSet is Carnet's to write, as
for every publish; the sender's is read only for its shape.

Pure: :func:`provide_bundle_documents` reads JSON and raises :class:`InvalidResource` naming the
entry for anything it cannot take, before anything is stored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from carnet.domain.documents import SIMPLIFIED_PUBLISH_PROFILE
from carnet.domain.errors import InvalidResource

__all__ = ["PROVIDE_BUNDLE_PROFILES", "is_provide_bundle", "provide_bundle_documents"]

_MHD = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
PROVIDE_BUNDLE_PROFILES = frozenset(
    _MHD + name
    for name in (
        "IHE.MHD.Minimal.ProvideBundle",
        "IHE.MHD.Comprehensive.ProvideBundle",
        "IHE.MHD.UnContained.Comprehensive.ProvideBundle",
    )
)
"""The Bundle profiles of ITI-65 (MHD 4.x)."""

MAX_DOCUMENTS = 50


def is_provide_bundle(bundle: Mapping[str, Any]) -> bool:
    """Tell whether a Bundle declares an MHD ProvideBundle profile (ITI-65)."""
    meta = bundle.get("meta")
    profiles = meta.get("profile") if isinstance(meta, Mapping) else None
    return isinstance(profiles, list) and any(p in PROVIDE_BUNDLE_PROFILES for p in profiles)


def provide_bundle_documents(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return each DocumentReference of an ITI-65 Bundle as a Simplified Publish, its Binary inline.

    Raises:
        InvalidResource: not a transaction, no SubmissionSet or no document, an entry that is
            not a List, DocumentReference or Binary (or a Patient, which is ignored), a document
            whose attachment names no Binary of the Bundle, or more than 50 documents.
    """
    if bundle.get("type") != "transaction":
        raise InvalidResource(
            "An ITI-65 Provide Document Bundle is a transaction Bundle.", expression=("Bundle.type",)
        )
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise InvalidResource("The Provide Document Bundle has no entry.", expression=("Bundle.entry",))
    binaries: dict[str, Mapping[str, Any]] = {}
    patients: dict[str, Mapping[str, Any]] = {}
    documents: list[tuple[int, Mapping[str, Any]]] = []
    submission_sets = 0
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        kind = resource.get("resourceType") if isinstance(resource, Mapping) else None
        where = f"Bundle.entry[{index}]"
        if not isinstance(resource, Mapping) or kind not in (
            "List",
            "DocumentReference",
            "Binary",
            "Patient",
        ):
            raise InvalidResource(
                f"{where} is not a List (SubmissionSet), DocumentReference or Binary; an ITI-65 "
                "Provide Document Bundle holds only those.",
                expression=(where,),
            )
        if kind == "Binary":
            full_url = entry.get("fullUrl")
            if not isinstance(full_url, str) or not full_url:
                raise InvalidResource(f"{where} (a Binary) has no fullUrl.", expression=(f"{where}.fullUrl",))
            binaries[full_url] = resource
        elif kind == "DocumentReference":
            documents.append((index, resource))
        elif kind == "List":
            submission_sets += 1
        elif isinstance(entry.get("fullUrl"), str):
            patients[entry["fullUrl"]] = resource
    if submission_sets != 1:
        raise InvalidResource(
            "An ITI-65 Provide Document Bundle holds exactly one SubmissionSet (a List).",
            expression=("Bundle.entry",),
        )
    if not documents or len(documents) > MAX_DOCUMENTS:
        raise InvalidResource(
            f"An ITI-65 Provide Document Bundle holds 1 to {MAX_DOCUMENTS} DocumentReferences.",
            expression=("Bundle.entry",),
        )
    return [_publishable(index, document, binaries, patients) for index, document in documents]


def _publishable(
    index: int,
    document: Mapping[str, Any],
    binaries: Mapping[str, Mapping[str, Any]],
    patients: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """One DocumentReference of the Bundle as a Simplified Publish: its Binaries' data inline.

    A subject naming a Patient of the Bundle (by fullUrl) names it by that Patient's first
    identifier instead (the INS): a feed never reads, the identity index finds the record.
    """
    out = copy.deepcopy(dict(document))
    out.pop("id", None)
    subject = out.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(reference, str) and reference in patients:
        identifiers = [i for i in patients[reference].get("identifier") or [] if isinstance(i, dict)]
        if not identifiers:
            raise InvalidResource(
                f"Bundle.entry[{index}] names a Patient of the Bundle without an identifier (the INS).",
                expression=(f"Bundle.entry[{index}].resource.subject",),
            )
        out["subject"] = {
            "identifier": {k: identifiers[0][k] for k in ("system", "value") if k in identifiers[0]}
        }
    contents = out.get("content")
    if not isinstance(contents, list) or not contents:
        raise InvalidResource(
            f"Bundle.entry[{index}] (a DocumentReference) has no content.",
            expression=(f"Bundle.entry[{index}].resource.content",),
        )
    for number, content in enumerate(contents):
        attachment = content.get("attachment") if isinstance(content, Mapping) else None
        where = f"Bundle.entry[{index}].resource.content[{number}].attachment"
        if not isinstance(attachment, dict):
            raise InvalidResource(f"{where} is missing.", expression=(where,))
        if isinstance(attachment.get("data"), str):
            continue
        binary = binaries.get(str(attachment.get("url")))
        data = binary.get("data") if binary is not None else None
        if not isinstance(data, str):
            raise InvalidResource(
                f"{where}.url names no Binary of the Bundle (by its fullUrl) with data.",
                expression=(f"{where}.url",),
            )
        attachment.pop("url", None)
        attachment["data"] = data
        if (
            binary is not None
            and "contentType" not in attachment
            and isinstance(binary.get("contentType"), str)
        ):
            attachment["contentType"] = binary["contentType"]
    meta = out.setdefault("meta", {})
    if not isinstance(meta, dict):
        raise InvalidResource(f"Bundle.entry[{index}].resource.meta is not an object.")
    profiles = [p for p in meta.get("profile") or [] if isinstance(p, str) and not p.startswith(_MHD)]
    meta["profile"] = [*profiles, SIMPLIFIED_PUBLISH_PROFILE]
    return out
