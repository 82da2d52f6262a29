"""Search in one's own record: documents and profile, by word, kind, date and author.

``GET /patient/search?q=&kind=&since=&until=&author=`` reads what the holder may see — the
record's documents (their DocumentEntry metadata: title, type, class, author, date) and the
profile's entries (allergies, treatments, vaccinations, conditions, measures) — through the
holder's own ``Records`` (every search journaled, as any read), and keeps the items matching
every word (case and accents ignored), of the kind asked, dated within the period, by an author
whose name holds the words given. Nothing is searched in the store itself: the fields are sealed,
so matching happens here, after the policy decided what the holder sees.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from carnet.web.document_classes import CLASSES
from carnet.web.document_text import document_text, snippet
from carnet.web.holder import Holder, holder_of, page, search
from carnet.web.i18n import translate
from carnet.web.patient_documents import first_content
from carnet.web.record_summary import concept_text, document_line

router = APIRouter(prefix="/patient", include_in_schema=False)

#: The profile's kinds of entry: resource type → (its name in the search's kind filter, label).
PROFILE_KINDS: dict[str, tuple[str, str]] = {
    "AllergyIntolerance": ("allergy", "Allergies and intolerances"),
    "MedicationStatement": ("treatment", "Treatments"),
    "Immunization": ("vaccination", "Vaccinations"),
    "Condition": ("condition", "Conditions"),
    "Observation": ("measure", "Measures"),
}
_DATES = {
    "AllergyIntolerance": ("recordedDate", "onsetDateTime"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "Condition": ("onsetDateTime", "recordedDate"),
    "Observation": ("effectiveDateTime", "issued"),
}
_TEXTS = {
    "AllergyIntolerance": ("code",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Condition": ("code",),
    "Observation": ("code",),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """One item of the record that matched: where it opens, what it is, when and by whom."""

    href: str
    title: str
    kind: str
    when: str
    author: str
    detail: str
    #: The words were found in the document's content (``detail`` is a snippet of it).
    in_content: bool = False


def folded(text: str) -> str:
    """Lower-case ``text`` without accents, for matching (« Échographie » matches "echographie")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _has_words(haystack: Iterable[str], words: str) -> bool:
    text = folded(" ".join(haystack))
    return all(word in text for word in folded(words).split())


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _first_date(resource: Mapping[str, Any], fields: Iterable[str]) -> str:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping) and isinstance(value.get("start"), str):
            return str(value["start"])
    return ""


def _authors(resource: Mapping[str, Any]) -> str:
    people = [resource.get(f) for f in ("recorder", "asserter", "informationSource")]
    people += [p.get("actor") if isinstance(p, Mapping) else None for p in resource.get("performer") or []]
    people += list(resource.get("performer") or [])
    return ", ".join(
        dict.fromkeys(str(p["display"]) for p in people if isinstance(p, Mapping) and p.get("display"))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """What the holder looks for; an empty query finds nothing (the form is shown)."""

    words: str
    kind: str
    since: date | None
    until: date | None
    author: str

    @classmethod
    def of(cls, request: Request) -> Query:
        """Read the query string (unknown or malformed values mean no filter)."""
        params = request.query_params
        kinds = {"document", *(k for k, _ in PROFILE_KINDS.values()), *(f"class-{c}" for c in CLASSES)}
        kind = params.get("kind", "")
        return cls(
            words=params.get("q", "").strip()[:100],
            kind=kind if kind in kinds else "",
            since=_day(params.get("since", "")),
            until=_day(params.get("until", "")),
            author=params.get("author", "").strip()[:100],
        )

    @property
    def empty(self) -> bool:
        """Whether nothing was asked."""
        return not (self.words or self.kind or self.since or self.until or self.author)

    def in_scope(self, when: str, author: str) -> bool:
        """Whether an item of this date and author passes the period and author filters."""
        day = _day(when)
        if (self.since or self.until) and day is None:
            return False
        if self.since and day and day < self.since:
            return False
        if self.until and day and day > self.until:
            return False
        return not (self.author and not _has_words([author], self.author))

    def keeps(self, texts: Iterable[str], when: str, author: str) -> bool:
        """Whether an item with these texts, date and author matches."""
        return self.in_scope(when, author) and _has_words([*texts, author], self.words)


def _content_words(holder: Holder, document: Mapping[str, Any]) -> str:
    """The words of a document's content (its first attachment), read as the holder."""
    found = first_content(holder, document)
    return document_text(*found) if found is not None else ""


@router.get("/search")
def search_record(request: Request) -> Response:
    """Search my record's documents and profile by word, kind, date and author."""
    holder = holder_of(request)
    query = Query.of(request)
    found: list[Found] = []
    if not query.empty:
        wants_documents = query.kind in ("", "document") or query.kind.startswith("class-")
        if wants_documents:
            for document in search(holder, "DocumentReference", ("_count", "1000")):
                line = document_line(document)
                if line.status != "current" and not line.archived:
                    continue
                if query.kind.startswith("class-") and line.class_code != query.kind.removeprefix("class-"):
                    continue
                label = CLASSES.get(line.class_code or "", "")
                texts = [
                    line.title,
                    line.type,
                    line.class_label,
                    translate("fr", label),
                    translate("en", label),
                ]
                detail = line.type if line.type != line.title else ""
                in_content = False
                matched = query.keeps(texts, line.date, line.author)
                if not matched and query.words and query.in_scope(line.date, line.author):
                    # Not in the metadata: in the document itself?
                    content = _content_words(holder, document)
                    if content and query.keeps([*texts, content], line.date, line.author):
                        matched, in_content, detail = True, True, snippet(content, query.words)
                if matched:
                    found.append(
                        Found(
                            href=f"/patient/documents/{line.id}",
                            title=line.title,
                            kind=label or "Other documents",
                            when=line.date,
                            author=line.author,
                            detail=detail,
                            in_content=in_content,
                        )
                    )
        for resource_type, (kind, label) in PROFILE_KINDS.items():
            if query.kind not in ("", kind):
                continue
            for resource in search(holder, resource_type, ("_count", "1000")):
                title = next((concept_text(resource.get(f)) for f in _TEXTS[resource_type]), "") or "—"
                notes = [str(n.get("text")) for n in resource.get("note") or [] if isinstance(n, Mapping)]
                dosage = [str(d.get("text")) for d in resource.get("dosage") or [] if isinstance(d, Mapping)]
                when = _first_date(resource, _DATES[resource_type])
                author = _authors(resource)
                texts = [title, translate("fr", label), translate("en", label), *notes, *dosage]
                if query.keeps(texts, when, author):
                    found.append(
                        Found(
                            href=f"/patient/profile#section-{_SECTIONS[resource_type]}",
                            title=title,
                            kind=label,
                            when=when,
                            author=author,
                            detail="; ".join(t for t in (*dosage, *notes) if t and t != "None"),
                        )
                    )
    found.sort(key=lambda f: f.when, reverse=True)
    return page(
        request,
        "patient/search.html",
        "search",
        {
            "query": query,
            "found": found,
            "classes": CLASSES,
            "profile_kinds": list(PROFILE_KINDS.values()),
        },
    )


#: The profile page's section of each kind of entry.
_SECTIONS = {
    "AllergyIntolerance": "allergy",
    "MedicationStatement": "treatment",
    "Immunization": "vaccination",
    "Condition": "condition",
    "Observation": "measure",
}
