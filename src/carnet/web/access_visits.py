"""The access history told as visits: who saw what, when and why, in plain words.

The journal holds one AuditEvent per request: opening a record in the professional portal
makes a dozen (the identity, the summary, each document and its content), one refused search
two (one per way in that was tried). A patient reads *visits* instead: the accesses of one
person to the record with no pause longer than :data:`VISIT_GAP` between them, told as one
sentence ("Dr Ribeiro, médecin généraliste, a consulté 5 documents et votre profil"), the
documents named by the titles the patient may see, refusals counted once and explained.

Nothing here reads the store: :func:`read_access` parses the AuditEvents the journal search
returned (IHE BALP shapes, see ``carnet.domain.audit_event``) and :func:`group_visits` groups
them; the words are looked up in the portal's catalogs (``carnet.web.i18n``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carnet.web.document_classes import CLASSES
from carnet.web.i18n import translate


def _paris() -> tzinfo:
    """Europe/Paris, or UTC on a system without time zone data (``tzdata``; .ci/run installs it)."""
    try:
        return ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:
        return UTC


#: Times are shown in the record's time zone, the patient's: metropolitan France.
PARIS = _paris()
#: A pause longer than this between two accesses of one person starts a new visit.
VISIT_GAP = timedelta(minutes=30)
#: The idNat_PS system (RPPS/ADELI) of a professional user agent.
_IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
_KIND_PREFIX = "https://carnet.health/fhir/NamingSystem/"
_SPECIALTY_SYSTEM_PART = "TRE-R38"
#: Resource types a patient thinks of as "documents" (the content of a document is its Binary).
_DOCUMENT_TYPES = frozenset({"DocumentReference", "Binary"})
_OPERATION_SYSTEM = "urn:carnet:operation"
#: Carnet's own operations on a record, in words (a clause of the visit's headline, and its step).
OPERATIONS = {
    "$link-identity": "linked a sign-in account to your record",
    "represent-add": "registered a legal representative of your record",
    "represent-claim": "took up their role as your legal representative",
    "represent-remove": "ended a legal representation of your record",
    "credential-enrol": "created your account with a passkey",
    "credential-passkey-add": "added a passkey to your account",
    "credential-passkey-remove": "removed a passkey from your account",
    "credential-recovery": "drew new recovery codes",
    "credential-totp-add": "set up an authenticator app",
    "credential-totp-remove": "removed the authenticator app",
    "feed-offer-decline": "refused a document waiting for your decision: nothing of it was kept",
}
#: A refused operation, in words.
OPERATION_REFUSALS = {
    "$link-identity": "Someone signing in with an identity provider typed your INS, but their identity did not match yours: nothing was linked.",
}

#: TRE_G15 professions, as a person is named by them.
PROFESSIONS = {
    "10": "doctor",
    "21": "pharmacist",
    "40": "dentist",
    "50": "midwife",
    "60": "nurse",
    "70": "physiotherapist",
}
#: TRE_R38 specialties of physicians, as a physician is named by them.
SPECIALTIES = {
    "SM03": "clinical biologist",
    "SM04": "cardiologist",
    "SM15": "dermatologist",
    "SM18": "geriatrician",
    "SM20": "gynaecologist-obstetrician",
    "SM27": "internist",
    "SM32": "neurologist",
    "SM40": "paediatrician",
    "SM41": "pulmonologist",
    "SM42": "psychiatrist",
    "SM44": "radiologist",
    "SM54": "general practitioner",
    "SM59": "emergency physician",
    "SM62": "endocrinologist",
}
#: Why a request was refused, in the patient's words (refusal reasons of ``carnet.domain.rules``).
REFUSALS = {
    "not-authorised": "This professional is neither authorised by you nor your treating physician: they saw nothing.",
    "not-treating-physician": "This professional is neither authorised by you nor your treating physician: they saw nothing.",
    "blocked": "You blocked this professional: they saw nothing.",
    "break-glass-opposed": "You opposed emergency access: they saw nothing.",
    "regulation-opposed": "You opposed access by the SAMU: they saw nothing.",
    "break-glass-justification-missing": "An emergency access needs a justification, and none was given: they saw nothing.",
    "record-closed": "Your record is closed: they saw nothing.",
    "matrix-denies-class": "Their profession may not read this kind of document: they did not see it.",
    "masked-from-professionals": "You hid this document from professionals: they did not see it.",
    "patient-own-record": "Someone signed in as another patient tried to reach your record: they saw nothing.",
    "forbidden-kind": "This kind of organisation may never read a health record: they saw nothing.",
    "feed-refused": "You refused this feed: nothing was added.",
    "feed-ask-patient": "You asked to decide first: it waits for your decision in My feeds, not in your record.",
    "feed-category-not-registered": "This feed may not send this kind of document: nothing was added.",
    "app-token-revoked": "You revoked this app's access: it was refused and saw nothing.",
    "app-token-expired": "This app's access had expired: it was refused and saw nothing.",
    "app-not-granted": "This app no longer has your permission (revoked or ended): it was refused and saw nothing.",
    "app-code-replayed": "This app's authorisation was presented twice, as an attacker would: its access was cut.",
    "app-scope-not-granted": "You did not let this app reach this data: it saw nothing.",
    "app-outside-record": "An app connected to another record tried to reach yours: it saw nothing.",
    "app-no-choices": "An app may never change your choices: nothing was changed.",
}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_REFUSED_DEFAULT = "The access rules refused the request: nothing was shown."
#: The order in which kinds of visit are listed first: emergencies, then refusals.
NOTABLE = ("break_glass", "regulation", "refused")
KINDS = ("break_glass", "regulation", "refused", "treating", "authorised", "feed", "representative", "mine")


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """One journal entry (one AuditEvent) as the history reads it."""

    id: str
    recorded: datetime
    who: str
    who_id: str
    actor_kind: str
    profession: str | None
    specialty: str | None
    mode: str
    action: str
    refused: bool
    reasons: tuple[str, ...]
    justification: str | None
    confirmed_by: str | None
    targets: tuple[str, ...]
    by_me: bool
    #: Carnet's own operation (``$link-identity``, ``represent-add``, ``credential-*``…), if any.
    operation: str = ""
    #: The class (DMP classCode, or a device feed's measure type) a feed offered, if it said.
    offered: str = ""

    @property
    def actor(self) -> str:
        """An opaque key of the person (filters carry it; never a record id in a URL)."""
        return hashlib.sha256(f"{self.actor_kind}|{self.who_id}".encode()).hexdigest()[:12]


@dataclass(slots=True, kw_only=True)
class Visit:
    """One person's accesses to the record without a long pause, newest last."""

    accesses: list[Access] = field(default_factory=list)

    @property
    def first(self) -> Access:
        """The first access of the visit."""
        return self.accesses[0]

    @property
    def id(self) -> str:
        """The visit's anchor: its first entry's id."""
        return self.first.id

    @property
    def start(self) -> datetime:
        """When the visit began."""
        return self.first.recorded

    @property
    def end(self) -> datetime:
        """When the visit's last access happened."""
        return self.accesses[-1].recorded

    @property
    def kind(self) -> str:
        """What the visit was, the most serious first: break_glass, regulation, refused, treating…"""
        modes = {a.mode for a in self.accesses if not a.refused}
        if self.first.by_me:
            return "mine"
        for mode in ("break_glass", "regulation"):
            if mode in modes:
                return mode
        if not modes:
            return "refused"
        if "treating" in modes:
            return "treating"
        if self.first.actor_kind == "feed" or "feed" in modes:
            return "feed"
        if self.first.actor_kind == "representative" or "representative" in modes:
            return "representative"
        return "authorised"

    @property
    def notable(self) -> bool:
        """Whether the visit is listed first (an emergency, or refused requests)."""
        return self.kind in NOTABLE or any(a.refused for a in self.accesses)

    @property
    def justification(self) -> str | None:
        """The emergency's justification, if one was given."""
        return next((a.justification for a in self.accesses if a.justification), None)

    @property
    def confirmed_by(self) -> str | None:
        """The second professional who confirmed a break-glass (``sovereign`` profile)."""
        return next((a.confirmed_by for a in self.accesses if a.confirmed_by), None)


def read_access(event: Mapping[str, Any], me: str) -> Access:
    """Parse one AuditEvent of the journal into an :class:`Access` (``me``: the holder's sign-in subject)."""
    agents = [a for a in event.get("agent") or [] if isinstance(a, Mapping)]
    agent: Mapping[str, Any] = next((a for a in agents if a.get("requestor")), agents[0] if agents else {})
    who = agent.get("who") or {}
    identifier = who.get("identifier") or {}
    system = str(identifier.get("system") or "")
    if system == _IDNPS_SYSTEM:
        actor_kind = "professional"
    elif system.startswith(_KIND_PREFIX):
        actor_kind = system.removeprefix(_KIND_PREFIX)
    else:
        actor_kind = "other"
    mode, justification, codes = "normal", None, set()
    for purpose in list(agent.get("purposeOfUse") or []) + list(event.get("purposeOfEvent") or []):
        if not isinstance(purpose, Mapping):
            continue
        for coding in purpose.get("coding") or []:
            if isinstance(coding, Mapping) and coding.get("code"):
                codes.add(str(coding["code"]))
                if str(coding.get("system", "")).endswith("/access-mode"):
                    mode = str(coding["code"])
        if purpose.get("text"):
            justification = str(purpose["text"])
    if mode == "normal" and "BTG" in codes:
        mode = "break_glass"
    profession = specialty = None
    for role in agent.get("role") or []:
        for coding in (role or {}).get("coding") or []:
            if not isinstance(coding, Mapping) or not coding.get("code"):
                continue
            if _SPECIALTY_SYSTEM_PART in str(coding.get("system", "")):
                specialty = str(coding["code"])
            else:
                profession = str(coding["code"])
    decision = [
        part
        for extension in event.get("extension") or []
        if isinstance(extension, Mapping)
        for part in extension.get("extension") or []
        if isinstance(part, Mapping)
    ]
    reasons = tuple(str(p.get("valueCode")) for p in decision if p.get("url") == "reason")
    confirmed_by = next(
        (str(p["valueString"]) for p in decision if p.get("url") == "confirmedBy" and p.get("valueString")),
        None,
    )
    refused = str(event.get("outcome") or "0") != "0"
    operation = next(
        (
            str(c.get("code") or "")
            for c in event.get("subtype") or []
            if isinstance(c, Mapping) and c.get("system") == _OPERATION_SYSTEM
        ),
        "",
    )
    kinds = {
        str(c.get("code")) for c in (agent.get("type") or {}).get("coding") or [] if isinstance(c, Mapping)
    }
    who_id = str(identifier.get("value") or "")
    targets = tuple(_target(e) for e in event.get("entity") or [] if _target(e))
    offered = next((c for c in (_offered(e) for e in event.get("entity") or []) if c), "")
    recorded = datetime.fromisoformat(str(event.get("recorded") or "1970-01-01T00:00:00Z"))
    return Access(
        id=str(event.get("id") or ""),
        recorded=recorded,
        who=str(who.get("display") or ""),
        who_id=who_id,
        actor_kind=actor_kind,
        profession=profession,
        specialty=specialty,
        mode=mode,
        action=str(event.get("action") or ""),
        refused=refused,
        reasons=reasons,
        justification=justification,
        confirmed_by=confirmed_by,
        targets=targets,
        # The policy lets a patient into no record but their own: a permitted patient is the holder
        # (on another device or app, say, or opening the record), whatever their sign-in subject.
        by_me=mode == "patient" or who_id == me or ("PAT" in kinds and not refused),
        operation=operation,
        offered=offered,
    )


def _offered(entity: object) -> str:
    """The class a feed's write named in its entry (``class=10``, the entity's base64 query), or ''."""
    query = entity.get("query") if isinstance(entity, Mapping) else None
    if not isinstance(query, str):
        return ""
    try:
        text = base64.b64decode(query, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return next((value[:16] for name, value in parse_qsl(text) if name == "class"), "")


def _target(entity: object) -> str:
    """The resource an entity names ('' for the record itself: ``Patient/id`` without a version).

    ``Patient/id/_history/n`` is the identity read; the bare ``Patient/id`` names the record
    the request was about, which every entry has.
    """
    if not isinstance(entity, Mapping) or not isinstance(entity.get("what"), Mapping):
        return ""
    reference = str(entity["what"].get("reference") or "")
    if reference.startswith("Patient/") and "/_history/" not in reference:
        return ""
    return reference


def group_visits(accesses: Iterable[Access], gap: timedelta = VISIT_GAP) -> list[Visit]:
    """Group accesses into visits (one person, no pause over ``gap``); newest visit first."""
    open_visits: dict[tuple[str, str], Visit] = {}
    visits: list[Visit] = []
    for access in sorted(accesses, key=lambda a: (a.recorded, a.id)):
        key = (access.actor_kind, access.who_id)
        current = open_visits.get(key)
        if current is None or access.recorded - current.end > gap:
            current = Visit()
            visits.append(current)
            open_visits[key] = current
        current.accesses.append(access)
    return sorted(visits, key=lambda v: (v.end, v.id), reverse=True)


def order_visits(visits: Sequence[Visit]) -> tuple[list[Visit], list[Visit]]:
    """Split visits into the notable ones (emergencies, then refusals) and the others, newest first each."""
    notable = [v for v in visits if v.notable]
    rank = {kind: index for index, kind in enumerate(NOTABLE)}
    notable.sort(key=lambda v: rank.get(v.kind, len(NOTABLE)))
    return notable, [v for v in visits if not v.notable]


# -- words ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Told:
    """A visit in words, in one language."""

    headline: str
    when: str
    documents: list[str]
    unnamed: int
    refusals: list[str]
    steps: list[tuple[Access, str, str]]


class Teller:
    """Puts visits into words in one language, naming documents by the titles the patient sees.

    ``titles`` maps a DocumentReference id to its title, ``binaries`` a Binary id to its
    DocumentReference's id; documents the patient may not see (``INVISIBLE_PATIENT``) are absent
    from both and are counted, never named.
    """

    def __init__(
        self, language: str, titles: Mapping[str, str], binaries: Mapping[str, str], now: datetime
    ) -> None:
        self._language = language
        self._titles = titles
        self._binaries = binaries
        self._now = now.astimezone(PARIS)

    def _(self, message: str, /, **values: Any) -> str:
        return translate(self._language, message, **values)

    def who(self, visit: Visit) -> str:
        """Name the person of a visit, with their profession ("Dr Ribeiro, general practitioner")."""
        first = visit.first
        if first.by_me:
            return self._("You")
        if first.actor_kind == "patient":
            return self._("Someone signed in as another patient")
        name = first.who or (first.who_id if first.actor_kind in ("professional", "feed") else "")
        role = self.role(first)
        if not name:
            return role or self._("Someone")
        return f"{name}, {role}," if role else name

    def role(self, access: Access) -> str | None:
        """The profession of a professional in words ("general practitioner", "pharmacist")."""
        if access.actor_kind == "representative":
            return self._("your legal representative")
        if access.actor_kind == "feed":
            return self._("automatic feed")
        if access.actor_kind == "app":
            return self._("connected app")
        if access.actor_kind != "professional":
            return None
        if access.specialty in SPECIALTIES:
            return self._(SPECIALTIES[access.specialty])
        if access.profession in PROFESSIONS:
            return self._(PROFESSIONS[access.profession])
        return self._("health professional")

    def moment(self, instant: datetime, *, with_date: bool = True) -> str:
        """An instant in Paris time: "lundi 6 décembre à 10 h 27" / "Monday 6 December at 10:27"."""
        local = instant.astimezone(PARIS)
        clock = f"{local.hour} h {local.minute:02d}" if self._language == "fr" else f"{local:%H:%M}"
        if not with_date:
            return clock
        day = self._(_WEEKDAYS[local.weekday()])
        month = self._(_MONTHS[local.month - 1])
        year = f" {local.year}" if local.year != self._now.year else ""
        return self._(
            "{weekday} {day} {month}{year} at {time}",
            weekday=day,
            day=local.day,
            month=month,
            year=year,
            time=clock,
        )

    def tell(self, visit: Visit) -> Told:
        """Put one visit into words."""
        read_docs: list[str] = []
        written: dict[str, list[str]] = {"C": [], "U": [], "D": []}
        profile = listed = journal = choices = False
        refusals: list[str] = []
        operations: list[str] = []
        steps: list[tuple[Access, str, str]] = []
        for access in visit.accesses:
            step = self._step(access)
            steps.append((access, self.moment(access.recorded, with_date=False), step))
            if access.refused:
                words = self._refusal(access)
                if words not in refusals:
                    refusals.append(words)
                continue
            if access.operation in OPERATIONS:
                words = self._offered(access, self._(OPERATIONS[access.operation]))
                if words not in operations:
                    operations.append(words)
                continue
            for target in access.targets:
                kind, _, rest = target.partition("/")
                ident = rest.split("/", 1)[0]
                if access.action in written and kind in _DOCUMENT_TYPES:
                    written[access.action].append(self._document_key(ident))
                elif access.action == "E" and kind in _DOCUMENT_TYPES:
                    # A search or the record's summary shows the documents' titles, not their content.
                    listed = True
                elif kind in _DOCUMENT_TYPES:
                    read_docs.append(self._document_key(ident))
                elif kind == "AuditEvent":
                    journal = True
                elif kind == "Consent" and access.action != "R":
                    choices = True
                elif access.action not in written:
                    profile = True
        documents = _unique(read_docs)
        named = [self._titles[d] for d in documents if d in self._titles]
        clauses: list[str] = list(operations)
        seen: list[str] = []
        if documents:
            seen.append(self._count(len(documents), "1 document", "{count} documents"))
        if profile:
            seen.append(self._("your profile"))
        if listed:
            seen.append(self._("the list of your documents"))
        if journal:
            seen.append(self._("your access history"))
        if seen:
            clauses.append(self._("read {what}", what=self._join(seen)))
        for action, verb in (("C", "added {what}"), ("U", "changed {what}"), ("D", "deleted {what}")):
            if written[action]:
                count = len(_unique(written[action]))
                clauses.append(self._(verb, what=self._count(count, "1 document", "{count} documents")))
            elif action == "C" and any(a.action == "C" and not a.refused for a in visit.accesses):
                clauses.append(self._("added information to your profile"))
        if choices:
            clauses.append(
                self._("recorded your consent to their access")
                if visit.first.actor_kind == "professional"
                else self._("changed your access choices")
            )
        if not clauses:
            clauses.append(self._("was refused access") if refusals else self._("opened your record"))
        headline = self._("{who} {what}", who=self.who(visit), what=self._join(clauses))
        start, end = self.moment(visit.start), visit.end
        when = start
        if end.astimezone(PARIS).strftime("%H%M") != visit.start.astimezone(PARIS).strftime("%H%M"):
            when = self._("{start} to {end}", start=start, end=self.moment(end, with_date=False))
        return Told(
            headline=headline,
            when=when,
            documents=named,
            unnamed=len(documents) - len(named),
            refusals=refusals,
            steps=steps,
        )

    def _document_key(self, ident: str) -> str:
        """A Binary counts as its DocumentReference (``titles`` maps both to the same title)."""
        return self._binaries.get(ident, ident)

    def _step(self, access: Access) -> str:
        """One access of a visit in words, for the detail."""
        if access.refused:
            return self._("Refused: {why}", why=self._refusal(access))
        if access.operation in OPERATIONS:
            words = self._offered(access, self._(OPERATIONS[access.operation]))
            return words[:1].upper() + words[1:]
        kinds = {t.split("/", 1)[0] for t in access.targets}
        names = [
            self._titles[self._document_key(t.split("/")[1])]
            for t in access.targets
            if t.split("/", 1)[0] in _DOCUMENT_TYPES and self._document_key(t.split("/")[1]) in self._titles
        ]
        if access.action in ("C", "U", "D"):
            verb = {"C": "Added", "U": "Changed", "D": "Deleted"}[access.action]
            return self._(verb) + (f" — {', '.join(_unique(names))}" if names else "")
        if access.action == "E" and kinds & _DOCUMENT_TYPES:
            return self._("Saw the list of your documents")
        if "AuditEvent" in kinds:
            return self._("Read your access history")
        if "Consent" in kinds and access.action != "R":
            return self._("Recorded an access choice")
        if kinds & _DOCUMENT_TYPES:
            if names:
                return self._("Opened the document “{title}”", title=_unique(names)[0])
            return self._("Opened a document")
        return self._("Read your profile")

    def _offered(self, access: Access, words: str) -> str:
        """Words followed by the class a feed offered, when the entry names one (never what)."""
        if not access.offered:
            return words
        what = self._(CLASSES[access.offered]) if access.offered in CLASSES else access.offered
        return self._("{why} (offered: {what})", why=words, what=what)

    def _refusal(self, access: Access) -> str:
        if access.operation in OPERATION_REFUSALS:
            return self._(OPERATION_REFUSALS[access.operation])
        reason = next((r for r in access.reasons if r in REFUSALS), None)
        words = self._(REFUSALS[reason] if reason else _REFUSED_DEFAULT)
        if access.actor_kind == "feed" and access.offered:
            # Which class the feed offered, never what: the journal keeps no content.
            what = self._(CLASSES[access.offered]) if access.offered in CLASSES else access.offered
            words = self._("{why} (offered: {what})", why=words, what=what)
        return words

    def _count(self, count: int, one: str, many: str) -> str:
        return self._(one) if count == 1 else self._(many, count=count)

    def _join(self, parts: Sequence[str]) -> str:
        if len(parts) == 1:
            return parts[0]
        return self._("{items} and {last}", items=", ".join(parts[:-1]), last=parts[-1])


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
