"""From an OpenID provider's claims to the claims of a Carnet principal (``carnet.domain.principal``).

Pro Santé Connect (SPECS.md §b1) names its claims after the DMP's VIHF attributes::

    SubjectNameID            idNat_PS (``8`` + RPPS, ``0`` + ADELI)        -> idnps, sub
    SubjectRole              ["<codeProfession>^1.2.250.1.213.1.1.5.5"]    -> profession
    SubjectRefPro.exercices[]
        codeProfession, codeSavoirFaire                                    -> profession, specialty
        activities[]         one per structure the professional acts for   -> structure (chosen)
    given_name, family_name                                                -> name
    Palier_Authentification  the authentication level reached              -> kept for the journal
    Acces_Regulation_Medicale  SAMU regulation access                      -> samu

A generic provider is described by a :class:`ClaimMapping` (``CARNET_OIDC_CLAIMS``, see
docs/configuration.md): which of its top-level claims carry the national identifier, the
profession, the specialty, the name and the structure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carnet.domain.errors import ConfigurationError, SignInRefused

#: The mapping keys ``CARNET_OIDC_CLAIMS`` accepts (``key=provider_claim`` pairs).
MAPPING_KEYS = ("idnps", "profession", "specialty", "name", "structure", "structure_name")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimMapping:
    """Where a provider puts what Carnet needs; ``psc`` means Pro Santé Connect's own names."""

    psc: bool = True
    names: tuple[tuple[str, str], ...] = ()

    def claim(self, key: str) -> str | None:
        """The provider's claim name for a Carnet key, if mapped."""
        return dict(self.names).get(key)


def parse_mapping(raw: str) -> ClaimMapping:
    """Parse ``CARNET_OIDC_CLAIMS``: ``psc`` (the default), or ``idnps=claim,profession=claim,…``.

    Raises:
        ConfigurationError: an unknown key, or no ``idnps``.
    """
    raw = raw.strip()
    if raw in ("", "psc"):
        return ClaimMapping()
    names: list[tuple[str, str]] = []
    for item in raw.split(","):
        key, equals, claim = item.strip().partition("=")
        if not equals or key not in MAPPING_KEYS or not claim:
            raise ConfigurationError(
                f"CARNET_OIDC_CLAIMS must be 'psc' or key=claim pairs with keys among {', '.join(MAPPING_KEYS)}."
            )
        names.append((key, claim))
    if "idnps" not in dict(names):
        raise ConfigurationError(
            "CARNET_OIDC_CLAIMS must map idnps (the professional's national identifier)."
        )
    return ClaimMapping(psc=False, names=tuple(names))


@dataclass(frozen=True, slots=True, kw_only=True)
class Structure:
    """One structure (lieu d'exercice) a professional acts for, with the profession exercised there."""

    identifier: str
    name: str
    profession: str | None
    specialty: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedInProfessional:
    """The verified identity of a professional, before a structure is chosen."""

    claims: dict[str, Any]
    structures: tuple[Structure, ...]

    def principal_claims(self, structure: Structure | None) -> dict[str, Any]:
        """The principal's claims, acting for ``structure`` (its profession and specialty win)."""
        out = dict(self.claims)
        if structure is not None:
            out["structure"] = structure.identifier
            out["structure_name"] = structure.name
            if structure.profession:
                out["profession"] = structure.profession
            if structure.specialty:
                out["specialty"] = structure.specialty
        return out


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _profession_of_role(role: Any) -> str | None:
    """``"10^1.2.250.1.213.1.1.5.5"`` (or a list of them) -> ``"10"``."""
    first = role[0] if isinstance(role, list) and role else role
    text = _text(first)
    return text.split("^", 1)[0] if text else None


def _psc_structures(claims: Mapping[str, Any]) -> tuple[Structure, ...]:
    exercices = claims.get("SubjectRefPro", {})
    exercices = exercices.get("exercices", []) if isinstance(exercices, dict) else []
    found: list[Structure] = []
    for exercice in exercices if isinstance(exercices, list) else []:
        if not isinstance(exercice, dict):
            continue
        profession, specialty = _text(exercice.get("codeProfession")), _text(exercice.get("codeSavoirFaire"))
        for activity in exercice.get("activities") or []:
            if not isinstance(activity, dict):
                continue
            identifier = (
                _text(activity.get("ancienIdentifiantDeLaStructure"))
                or _text(activity.get("identifiantTechniqueDeLaStructure"))
                or _text(activity.get("numeroFinessSite"))
                or _text(activity.get("numeroSiretSite"))
            )
            if identifier is None:
                continue
            name = _text(activity.get("raisonSocialeSite")) or identifier
            found.append(
                Structure(identifier=identifier, name=name, profession=profession, specialty=specialty)
            )
    return tuple(found)


def professional(claims: Mapping[str, Any], mapping: ClaimMapping) -> SignedInProfessional:
    """Map a provider's verified claims (ID token and userinfo merged) to a professional.

    Raises:
        SignInRefused: no national identifier, or no profession.
    """
    if mapping.psc:
        idnps = _text(claims.get("SubjectNameID")) or _text(claims.get("preferred_username"))
        structures = _psc_structures(claims)
        profession = _profession_of_role(claims.get("SubjectRole")) or next(
            (s.profession for s in structures if s.profession), None
        )
        specialty = next((s.specialty for s in structures if s.specialty), None)
        samu = str(claims.get("Acces_Regulation_Medicale", "")).lower() in ("true", "1", "oui")
    else:

        def mapped(key: str) -> Any:
            name = mapping.claim(key)
            return claims.get(name) if name else None

        idnps, profession, specialty = (
            _text(mapped("idnps")),
            _text(mapped("profession")),
            _text(mapped("specialty")),
        )
        structure_id = _text(mapped("structure"))
        structures = (
            (
                Structure(
                    identifier=structure_id,
                    name=_text(mapped("structure_name")) or structure_id,
                    profession=profession,
                    specialty=specialty,
                ),
            )
            if structure_id
            else ()
        )
        samu = False
    if idnps is None or not idnps.isdigit():
        raise SignInRefused(
            "The identity provider sent no national identifier (idNat_PS) for this professional.",
            reason="claims",
        )
    if profession is None:
        raise SignInRefused(
            "The identity provider sent no profession for this professional.", reason="claims"
        )
    given, family = _text(claims.get("given_name")), _text(claims.get("family_name"))
    name = " ".join(part for part in (given, family) if part) or _text(claims.get("name")) or f"PS {idnps}"
    out: dict[str, Any] = {
        "kind": "professional",
        "sub": f"idnps:{idnps}",
        "idnps": idnps,
        "name": name,
        "profession": profession,
    }
    if specialty:
        out["specialty"] = specialty
    if samu:
        out["samu"] = True
    level = _text(claims.get("Palier_Authentification"))
    if level:
        out["assurance"] = level.split("^", 1)[0]
    return SignedInProfessional(claims=out, structures=structures)
