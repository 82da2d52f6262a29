"""The patient's choices as FHIR R4 Consent resources, and the grants the policy reads from them.

Each choice (authorise, block, name a treating physician, oppose break-glass or regulation,
refuse or accept a feed, let the occupational physician in, research opt-in/out) is one Consent
of the Carnet convention, so that the choices travel with the record (DESIGN §2):

=====================================  ==========================================================
element                                value
=====================================  ==========================================================
``status``                             ``active`` counts; every other status is ignored
``scope``                              consentscope ``patient-privacy``
``category``                           a coding of :data:`KIND_SYSTEM` naming the :class:`ConsentKind`
``patient``                            ``Patient/<record id>``
``dateTime``                           when the choice was made
``policyRule``                         v3-ActCode ``OPTIN`` (a permit) or ``OPTOUT`` (a deny)
``provision.type``                     ``permit`` or ``deny``, as the kind says
``provision.period``                   ``start`` (not yet in force before) and ``end`` (inclusive)
``provision.actor[].reference``        ``identifier`` of the professional (idNat_PS,
                                       :data:`IDNPS_SYSTEM`) or of the feed (:data:`FEED_SYSTEM`)
``provision.code[]``                   DMP classCodes (:data:`CLASS_CODE_SYSTEM`), for feed choices
``provision.actor[].reference``        ``identifier`` of the study (:data:`STUDY_SYSTEM`) for a
                                       research choice about one study (none: every study)
``provision.action[]``                 for an app grant, the SMART scopes granted (:data:`SMART_SCOPE_SYSTEM`);
                                       its actor is the app's client id (:data:`APP_SYSTEM`)
=====================================  ==========================================================

A Consent without a category of :data:`KIND_SYSTEM` is not a Carnet choice (an advance directive,
say) and is ignored. An authorisation whose period ended is kept as ``expired``; any other choice
whose period ended, or has not started, does not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from carnet.domain.errors import InvalidRequest, InvalidResource
from carnet.domain.grants import AppGrant
from carnet.domain.policy import Authorisation, AuthorisationStatus, Grants
from carnet.domain.search import DateRange, parse_date

KIND_SYSTEM = "https://carnet.health/fhir/CodeSystem/consent-kind"
"""The Carnet code system naming the kind of choice a Consent records."""
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
"""The national identifier of health professionals (idNat_PS: ``8`` + RPPS, ``0`` + ADELI)."""
FEED_SYSTEM = "https://carnet.health/fhir/NamingSystem/feed"
"""Identifiers of the feeds (systems that write into records) registered with Carnet."""
STUDY_SYSTEM = "https://carnet.health/fhir/NamingSystem/research-study"
"""Identifiers of the research studies registered with Carnet (a study's ``ResearchStudy`` id)."""
APP_SYSTEM = "https://carnet.health/fhir/NamingSystem/app"
"""Client ids of the apps (SMART on FHIR) registered with Carnet (``carnet apps add``)."""
SMART_SCOPE_SYSTEM = "https://carnet.health/fhir/CodeSystem/smart-scope"
"""SMART App Launch 2.x scopes, as codes (``patient/Observation.cs``…)."""
CLASS_CODE_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.1"
"""TRE_A03-ClasseDocument, the DMP classCode."""
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


class ConsentKind(StrEnum):
    """The kinds of choice a Carnet Consent records (codes of :data:`KIND_SYSTEM`)."""

    AUTHORISATION = "authorisation"
    BLOCK = "block"
    TREATING_PHYSICIAN = "treating-physician"
    OPPOSITION_BREAK_GLASS = "opposition-break-glass"
    OPPOSITION_REGULATION = "opposition-regulation"
    FEED_REFUSAL = "feed-refusal"
    FEED_ACCEPTANCE = "feed-acceptance"
    #: « Me demander d'abord »: the feed's documents wait in the patient's inbox for a decision.
    FEED_ASK_FIRST = "feed-ask-first"
    OCCUPATIONAL_CONSENT = "occupational-consent"
    RESEARCH_OPT_OUT = "research-opt-out"
    RESEARCH_OPT_IN = "research-opt-in"
    APP_GRANT = "app-grant"


_KIND_CODES = frozenset(str(kind) for kind in ConsentKind)
#: Kinds that name professionals, kinds that name feeds (by id or classCode), and the permits.
PROFESSIONAL_KINDS = frozenset(
    {
        ConsentKind.AUTHORISATION,
        ConsentKind.BLOCK,
        ConsentKind.TREATING_PHYSICIAN,
        ConsentKind.OCCUPATIONAL_CONSENT,
    }
)
FEED_KINDS = frozenset({ConsentKind.FEED_REFUSAL, ConsentKind.FEED_ACCEPTANCE, ConsentKind.FEED_ASK_FIRST})
RESEARCH_KINDS = frozenset({ConsentKind.RESEARCH_OPT_OUT, ConsentKind.RESEARCH_OPT_IN})
PERMITS = frozenset(
    {
        ConsentKind.AUTHORISATION,
        ConsentKind.TREATING_PHYSICIAN,
        ConsentKind.FEED_ACCEPTANCE,
        ConsentKind.OCCUPATIONAL_CONSENT,
        ConsentKind.RESEARCH_OPT_IN,
        ConsentKind.APP_GRANT,
    }
)
_DISPLAYS: Mapping[ConsentKind, str] = MappingProxyType(
    {
        ConsentKind.AUTHORISATION: "Professionnel autorisé",
        ConsentKind.BLOCK: "Professionnel bloqué",
        ConsentKind.TREATING_PHYSICIAN: "Médecin traitant",
        ConsentKind.OPPOSITION_BREAK_GLASS: "Opposition à l'accès en mode bris de glace",
        ConsentKind.OPPOSITION_REGULATION: "Opposition à l'accès du médecin régulateur du centre 15",
        ConsentKind.FEED_REFUSAL: "Refus d'une alimentation",
        ConsentKind.FEED_ACCEPTANCE: "Acceptation d'une alimentation",
        ConsentKind.FEED_ASK_FIRST: "Alimentation soumise à mon accord préalable",
        ConsentKind.OCCUPATIONAL_CONSENT: "Consentement exprès au médecin du travail",
        ConsentKind.RESEARCH_OPT_OUT: "Opposition à la recherche",
        ConsentKind.RESEARCH_OPT_IN: "Acceptation de la recherche",
        ConsentKind.APP_GRANT: "Accès accordé à une application",
    }
)


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def consent_for(
    kind: ConsentKind,
    patient_id: str,
    professional_id: str | None = None,
    until: datetime | None = None,
    *,
    now: datetime,
    feed_id: str | None = None,
    class_code: str | None = None,
    study_id: str | None = None,
    app_id: str | None = None,
    scopes: Iterable[str] = (),
) -> dict[str, Any]:
    """Build the Consent recording one choice of the patient (a FHIR R4 resource, without an id).

    ``professional_id`` names the professional of an authorisation, block, treating physician
    or occupational consent; a feed choice names ``feed_id`` and/or ``class_code``; a research
    choice may name one ``study_id`` (else it is about every study); ``until`` ends the choice
    (inclusive).
    or occupational consent; a feed choice names ``feed_id`` and/or ``class_code``; an app grant
    names ``app_id`` and the ``scopes`` granted; ``until`` ends the choice (inclusive).

    Raises:
        ValueError: the kind needs a professional or a feed that is not given.
    """
    actors: list[dict[str, Any]] = []
    if kind in PROFESSIONAL_KINDS:
        if not professional_id:
            raise ValueError(f"A {kind} Consent names the professional: pass professional_id.")
        actors.append(_actor("IRCP", IDNPS_SYSTEM, professional_id))
    if kind in FEED_KINDS:
        if not (feed_id or class_code):
            raise ValueError(f"A {kind} Consent names the feed: pass feed_id or class_code.")
        if feed_id:
            actors.append(_actor("AUT", FEED_SYSTEM, feed_id))
    if kind in RESEARCH_KINDS and study_id:
        actors.append(_actor("IRCP", STUDY_SYSTEM, study_id))
    if kind is ConsentKind.APP_GRANT:
        if not app_id or not scopes:
            raise ValueError("An app-grant Consent names the app and its scopes: pass app_id and scopes.")
        actors.append(_actor("IRCP", APP_SYSTEM, app_id))
    provision: dict[str, Any] = {"type": "permit" if kind in PERMITS else "deny"}
    if until is not None:
        provision["period"] = {"end": _instant(until)}
    if actors:
        provision["actor"] = actors
    if kind in FEED_KINDS and class_code:
        provision["code"] = [{"coding": [{"system": CLASS_CODE_SYSTEM, "code": class_code}]}]
    if kind is ConsentKind.APP_GRANT:
        provision["action"] = [
            {"coding": [{"system": SMART_SCOPE_SYSTEM, "code": scope}]} for scope in dict.fromkeys(scopes)
        ]
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": KIND_SYSTEM, "code": str(kind), "display": _DISPLAYS[kind]}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": _instant(now),
        "policyRule": {
            "coding": [{"system": ACT_CODE_SYSTEM, "code": "OPTIN" if kind in PERMITS else "OPTOUT"}]
        },
        "provision": provision,
    }


def _actor(role: str, system: str, value: str) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": PARTICIPATION_SYSTEM, "code": role}]},
        "reference": {"identifier": {"system": system, "value": value}},
    }


def _kind(consent: Mapping[str, Any]) -> ConsentKind | None:
    """Return the Carnet kind of a Consent, or None if it is not a Carnet choice."""
    for category in _list(consent.get("category")):
        for coding in map(_dict, _list(_dict(category).get("coding"))):
            if coding.get("system") != KIND_SYSTEM:
                continue
            code = coding.get("code")
            if isinstance(code, str) and code in _KIND_CODES:
                return ConsentKind(code)
            raise InvalidResource(
                f"Consent category {str(code)[:40]!r} is not a kind of {KIND_SYSTEM}.",
                expression=("Consent.category",),
            )
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _period(provision: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """Return the first and last instants of ``provision.period`` (None when open)."""
    period = _dict(provision.get("period"))
    try:
        start = _range(period.get("start"))
        end = _range(period.get("end"))
    except InvalidRequest as error:
        raise InvalidResource(
            f"Consent provision.period: {error.message}", expression=("Consent.provision.period",)
        ) from None
    return (
        start.low if start is not None else None,
        end.high - timedelta(microseconds=1) if end is not None else None,
    )


def _range(value: object) -> DateRange | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{str(value)[:40]!r} is not a FHIR dateTime.")
    return parse_date(value)


def _names(provision: Mapping[str, Any], system: str) -> list[str]:
    """Return the identifier values of the provision's actors in ``system``."""
    names = []
    for actor in _list(provision.get("actor")):
        identifier = _dict(_dict(_dict(actor).get("reference")).get("identifier"))
        value = identifier.get("value")
        if identifier.get("system") == system and isinstance(value, str) and value:
            names.append(value)
    return names


def _class_codes(provision: Mapping[str, Any]) -> list[str]:
    codes = []
    for concept in _list(provision.get("code")):
        for coding in _list(_dict(concept).get("coding")):
            code = _dict(coding).get("code")
            if _dict(coding).get("system") == CLASS_CODE_SYSTEM and isinstance(code, str) and code:
                codes.append(code)
    return codes


def grants_from_consents(consents: Iterable[Mapping[str, Any]], now: datetime) -> Grants:
    """Read the patient's Consents (FHIR R4, the Carnet convention above) into the policy's grants.

    Consents that are not ``active``, are not Carnet choices, or are not in force at ``now`` are
    ignored, except an authorisation whose period ended: it is kept as ``expired``. When one
    professional has several authorisations, a valid one wins, then the latest end.

    Raises:
        InvalidResource: a Carnet Consent names an unknown kind, has a bad period, or does not
            name the professional or feed its kind needs (a broken choice must not pass silently).
    """
    authorisations: dict[str, Authorisation] = {}
    apps: dict[str, AppGrant] = {}
    sets: dict[ConsentKind, set[str]] = {kind: set() for kind in ConsentKind}
    flags: set[ConsentKind] = set()
    studies: dict[ConsentKind, set[str]] = {kind: set() for kind in RESEARCH_KINDS}
    for consent in consents:
        if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
            continue
        kind = _kind(consent)
        if kind is None:
            continue
        provision = _dict(consent.get("provision"))
        start, end = _period(provision)
        if start is not None and now < start:
            continue
        ended = end is not None and end < now
        if kind in PROFESSIONAL_KINDS:
            names = _names(provision, IDNPS_SYSTEM)
        elif kind in FEED_KINDS:
            names = _names(provision, FEED_SYSTEM) + _class_codes(provision)
        elif kind is ConsentKind.APP_GRANT:
            names = _names(provision, APP_SYSTEM)
            if not names:
                raise InvalidResource(
                    "An app-grant Consent names the app in provision.actor.",
                    expression=("Consent.provision.actor",),
                )
        else:
            names = []
        if not names and (kind in PROFESSIONAL_KINDS or kind in FEED_KINDS):
            raise InvalidResource(
                f"A {kind} Consent names whom it is about in provision.actor (or provision.code for a feed).",
                expression=("Consent.provision.actor",),
            )
        if kind is ConsentKind.AUTHORISATION:
            status = AuthorisationStatus.EXPIRED if ended else AuthorisationStatus.VALID
            for name in names:
                authorisations[name] = _stronger(
                    authorisations.get(name), Authorisation(status=status, until=end)
                )
        elif kind in RESEARCH_KINDS and not ended and _names(provision, STUDY_SYSTEM):
            studies[kind].update(_names(provision, STUDY_SYSTEM))
        elif kind is ConsentKind.APP_GRANT:
            if not ended:
                scopes = frozenset(_scopes(provision))
                identity = consent.get("id")
                for name in names:
                    apps[name] = AppGrant(
                        scopes=scopes | apps[name].scopes if name in apps else scopes,
                        until=end if name not in apps else _later(apps[name].until, end),
                        consent_id=identity if isinstance(identity, str) else None,
                    )
        elif not ended:
            sets[kind].update(names)
            flags.add(kind)
    return Grants(
        authorisations=MappingProxyType(authorisations),
        blocked=frozenset(sets[ConsentKind.BLOCK]),
        treating=frozenset(sets[ConsentKind.TREATING_PHYSICIAN]),
        opposes_break_glass=ConsentKind.OPPOSITION_BREAK_GLASS in flags,
        opposes_regulation=ConsentKind.OPPOSITION_REGULATION in flags,
        refused_feeds=frozenset(sets[ConsentKind.FEED_REFUSAL]),
        accepted_feeds=frozenset(sets[ConsentKind.FEED_ACCEPTANCE]),
        asked_feeds=frozenset(sets[ConsentKind.FEED_ASK_FIRST]),
        occupational_consent=frozenset(sets[ConsentKind.OCCUPATIONAL_CONSENT]),
        research_opt_out=ConsentKind.RESEARCH_OPT_OUT in flags,
        research_opt_in=ConsentKind.RESEARCH_OPT_IN in flags,
        research_opted_out=frozenset(studies[ConsentKind.RESEARCH_OPT_OUT]),
        research_opted_in=frozenset(studies[ConsentKind.RESEARCH_OPT_IN]),
        apps=MappingProxyType(apps),
    )


def _scopes(provision: Mapping[str, Any]) -> list[str]:
    """Return the SMART scopes of an app grant's ``provision.action``."""
    scopes = []
    for concept in _list(provision.get("action")):
        for coding in _list(_dict(concept).get("coding")):
            code = _dict(coding).get("code")
            if _dict(coding).get("system") == SMART_SCOPE_SYSTEM and isinstance(code, str) and code:
                scopes.append(code)
    return scopes


def _later(one: datetime | None, other: datetime | None) -> datetime | None:
    """The later of two ends, an open end (None) being the latest."""
    if one is None or other is None:
        return None
    return max(one, other)


def _stronger(old: Authorisation | None, new: Authorisation) -> Authorisation:
    """Keep the authorisation that grants more: a valid one, then one without end, then the last to end."""
    if old is None:
        return new

    def strength(authorisation: Authorisation) -> tuple[bool, bool, float]:
        until = authorisation.until
        valid = authorisation.status is AuthorisationStatus.VALID
        return (valid, until is None, until.timestamp() if until is not None else 0.0)

    return max(old, new, key=strength)


DECLARABLE = frozenset({ConsentKind.AUTHORISATION, ConsentKind.TREATING_PHYSICIAN})
"""The choices a professional may record for themselves, in the patient's presence."""


def declares_for(consent: Mapping[str, Any], professional_id: str | None) -> bool:
    """Tell whether ``consent`` is an active authorisation or treating-physician choice naming only ``professional_id``.

    Raises:
        InvalidResource: the Consent names an unknown Carnet kind.
    """
    if professional_id is None or consent.get("status") != "active" or _kind(consent) not in DECLARABLE:
        return False
    names = _names(_dict(consent.get("provision")), IDNPS_SYSTEM)
    return bool(names) and set(names) == {professional_id}


def consent_kind(consent: Mapping[str, Any]) -> ConsentKind | None:
    """Return the kind of choice a Consent records (its :data:`KIND_SYSTEM` category), or None."""
    for category in consent.get("category") or []:
        for coding in (category or {}).get("coding") or [] if isinstance(category, dict) else []:
            if (
                isinstance(coding, dict)
                and coding.get("system") == KIND_SYSTEM
                and coding.get("code") in _KIND_CODES
            ):
                return ConsentKind(str(coding["code"]))
    return None


def consent_app(consent: Mapping[str, Any]) -> str | None:
    """Return the client id of the app an app-grant Consent names, or None."""
    names = _names(_dict(consent.get("provision")), APP_SYSTEM)
    return names[0] if names else None


def consent_scopes(consent: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the SMART scopes an app-grant Consent grants."""
    return tuple(_scopes(_dict(consent.get("provision"))))


def consent_professional(consent: Mapping[str, Any]) -> str | None:
    """Return the idNat_PS of the professional a Consent names, or None."""
    for actor in (consent.get("provision") or {}).get("actor") or []:
        identifier = ((actor or {}).get("reference") or {}).get("identifier") or {}
        if identifier.get("system") == IDNPS_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None
