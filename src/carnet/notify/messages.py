"""Render a notice as an e-mail, in French or English: who, when, in which mode — nothing clinical.

The message has a plain-text body and a simple HTML alternative carrying the same words. Its
``Message-ID`` is derived from the outbox message id, so a copy sent again after a crash (the
worker delivers at least once) is recognisable as the same message by mail clients and servers.
Times are shown in Europe/Paris local time.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carnet.domain.principal import ActorKind
from carnet.services.notifications import Delivery, Notice, NoticeEvent, NoticeMode

JOURNAL_PATH = "/patient/access"
#: The professional portal's inbox, where a patient's message waits.
PRO_INBOX_PATH = "/pro/messages"

#: TRE_G15 profession codes (ANS nomenclature) in words.
PROFESSIONS: Mapping[str, Mapping[str, str]] = {
    "10": {"fr": "médecin", "en": "physician"},
    "21": {"fr": "pharmacien", "en": "pharmacist"},
    "26": {"fr": "audioprothésiste", "en": "hearing-aid specialist"},
    "28": {"fr": "opticien-lunetier", "en": "optician"},
    "40": {"fr": "chirurgien-dentiste", "en": "dentist"},
    "50": {"fr": "sage-femme", "en": "midwife"},
    "60": {"fr": "infirmier ou infirmière", "en": "nurse"},
    "70": {"fr": "masseur-kinésithérapeute", "en": "physiotherapist"},
    "80": {"fr": "pédicure-podologue", "en": "podiatrist"},
}
_GENERIC_PROFESSION = {"fr": "professionnel de santé", "en": "health professional"}

_MONTHS = {
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    "en": (
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
    ),
}

_SUBJECTS: Mapping[NoticeEvent, Mapping[str, str]] = {
    NoticeEvent.BREAK_GLASS: {
        "fr": "Carnet : accès en urgence (bris de glace) à votre dossier médical",
        "en": "Carnet: emergency (break-glass) access to your medical record",
    },
    NoticeEvent.REGULATION: {
        "fr": "Carnet : accès du SAMU (régulation) à votre dossier médical",
        "en": "Carnet: SAMU emergency-line access to your medical record",
    },
    NoticeEvent.NEW_DOCUMENT: {
        "fr": "Carnet : un nouveau document a été ajouté à votre dossier médical",
        "en": "Carnet: a new document was added to your medical record",
    },
    NoticeEvent.NEW_PROFESSIONAL: {
        "fr": "Carnet : un nouveau professionnel a accédé à votre dossier médical",
        "en": "Carnet: a new professional accessed your medical record",
    },
    NoticeEvent.MASKED_ACCESS: {
        "fr": "Carnet : un médecin traitant a consulté un document masqué",
        "en": "Carnet: a treating physician read a masked document",
    },
    NoticeEvent.NEW_MESSAGE: {
        "fr": "Carnet : un nouveau message de votre équipe de soins",
        "en": "Carnet: a new message from your care team",
    },
    NoticeEvent.PATIENT_MESSAGE: {
        "fr": "Carnet : un message vous attend dans votre messagerie",
        "en": "Carnet: a message is waiting in your secure messaging",
    },
}

_WHAT: Mapping[NoticeEvent, Mapping[str, str]] = {
    NoticeEvent.BREAK_GLASS: {
        "fr": "Un professionnel de santé a ouvert votre dossier médical en mode urgence (« bris de "
        "glace ») : il a déclaré une situation d'urgence, sans votre autorisation préalable.",
        "en": "A health professional opened your medical record in emergency mode (“break the "
        "glass”): they declared an emergency, without your prior authorisation.",
    },
    NoticeEvent.REGULATION: {
        "fr": "Un médecin régulateur du SAMU (centre 15) a consulté votre dossier médical.",
        "en": "A regulating physician of the SAMU emergency line (centre 15) read your medical record.",
    },
    NoticeEvent.NEW_DOCUMENT: {
        "fr": "Un nouveau document a été ajouté à votre dossier médical.",
        "en": "A new document was added to your medical record.",
    },
    NoticeEvent.NEW_PROFESSIONAL: {
        "fr": "Un professionnel de santé a accédé à votre dossier médical pour la première fois.",
        "en": "A health professional accessed your medical record for the first time.",
    },
    NoticeEvent.MASKED_ACCESS: {
        "fr": "L'un de vos médecins traitants a consulté un document que vous avez masqué aux "
        "professionnels de santé.",
        "en": "One of your treating physicians read a document you masked from health professionals.",
    },
    NoticeEvent.NEW_MESSAGE: {
        "fr": "Un professionnel de santé de votre équipe de soins vous a écrit : lisez son message "
        "dans la messagerie de votre espace.",
        "en": "A health professional of your care team wrote to you: read the message in your "
        "space's secure messaging.",
    },
    NoticeEvent.PATIENT_MESSAGE: {
        "fr": "Un patient vous a écrit par la messagerie sécurisée de Carnet : connectez-vous pour "
        "lire son message.",
        "en": "A patient wrote to you through Carnet's secure messaging: sign in to read the message.",
    },
}
#: The footer of a professional's notice (nothing of who wrote or what).
_PRO_FOOTER = {
    "fr": "Ce message ne contient aucune information sur le patient ni sur son message. Merci de "
    "ne pas répondre à ce message.",
    "en": "This message contains nothing about the patient or their message. Please do not reply "
    "to this message.",
}
_PRO_LINK = {"fr": "Messagerie", "en": "Secure messaging"}

_CHECK: Mapping[NoticeEvent, Mapping[str, str]] = {
    NoticeEvent.BREAK_GLASS: {
        "fr": "Ce professionnel a dû justifier cet accès : lisez sa justification dans le journal "
        "des accès de votre espace et, si cet accès ne vous paraît pas justifié, signalez-le.",
        "en": "The professional had to justify this access: read the justification in the access "
        "journal of your space and, if the access does not seem justified to you, report it.",
    },
    NoticeEvent.REGULATION: {
        "fr": "Vérifiez cet accès dans le journal des accès de votre espace ; vous pouvez vous "
        "opposer aux accès en régulation dans vos réglages.",
        "en": "Check this access in the access journal of your space; you may oppose emergency-line "
        "access in your settings.",
    },
}
_CHECK_DEFAULT = {
    "fr": "Le détail figure dans le journal des accès de votre espace.",
    "en": "The details are in the access journal of your space.",
}

_MODES: Mapping[NoticeMode, Mapping[str, str]] = {
    NoticeMode.NORMAL: {"fr": "accès habituel", "en": "normal access"},
    NoticeMode.BREAK_GLASS: {"fr": "urgence (bris de glace)", "en": "emergency (break-glass)"},
    NoticeMode.REGULATION: {"fr": "régulation du SAMU (centre 15)", "en": "SAMU emergency line (centre 15)"},
}

_LABELS = {
    "fr": {
        "hello": "Bonjour,",
        "who": "Qui",
        "id": "Identifiant",
        "when": "Quand",
        "mode": "Mode d'accès",
        "journal": "Journal des accès",
        "footer": "Ce message ne contient aucune information médicale. Vous choisissez les "
        "notifications que vous recevez dans votre espace ; les accès en urgence et par le SAMU "
        "sont toujours notifiés. Merci de ne pas répondre à ce message.",
        "sep": " : ",
    },
    "en": {
        "hello": "Hello,",
        "who": "Who",
        "id": "Identifier",
        "when": "When",
        "mode": "Access mode",
        "journal": "Access journal",
        "footer": "This message contains no medical information. You choose which notifications "
        "you receive in your space; emergency and SAMU accesses are always notified. Please do "
        "not reply to this message.",
        "sep": ": ",
    },
}


def _clean(text: str | None, limit: int = 120) -> str | None:
    """Keep printable characters only (no line breaks from a token's claims)."""
    if text is None:
        return None
    cleaned = "".join(ch for ch in text if ch.isprintable()).strip()[:limit]
    return cleaned or None


def profession_words(code: str | None, language: str) -> str:
    """Return a TRE_G15 profession code in words (a generic term for unknown codes)."""
    return PROFESSIONS.get(code or "", _GENERIC_PROFESSION)[language]


def who(notice: Notice, language: str) -> str:
    """Describe the actor of a notice: name and profession, or the kind of actor."""
    display = _clean(notice.actor_display)
    kind = notice.actor_kind
    if kind is ActorKind.PROFESSIONAL:
        profession = profession_words(notice.actor_profession, language)
        return f"{display}, {profession}" if display else profession.capitalize()
    if kind is ActorKind.FEED:
        if language == "fr":
            return f"le service connecté « {display} »" if display else "un service connecté"
        return f"the connected service “{display}”" if display else "a connected service"
    if kind is ActorKind.PATIENT:
        return "vous-même" if language == "fr" else "yourself"
    if kind is ActorKind.REPRESENTATIVE:
        base = "votre représentant légal" if language == "fr" else "your legal representative"
        return f"{base} ({display})" if display else base
    return display or ("un autre intervenant" if language == "fr" else "another party")


def when(moment: datetime, language: str) -> str:
    """Render a moment as Paris local time, in words (UTC if the time zone data is missing)."""
    try:
        local, zone = moment.astimezone(ZoneInfo("Europe/Paris")), "heure de Paris"
    except ZoneInfoNotFoundError:
        local, zone = moment.astimezone(UTC), "UTC"
    month = _MONTHS[language][local.month - 1]
    if language == "fr":
        day = "1er" if local.day == 1 else str(local.day)
        return f"le {day} {month} {local.year} à {local.hour} h {local.minute:02d} ({zone})"
    zone = "Paris time" if zone != "UTC" else zone
    return f"{local.day} {month} {local.year} at {local.hour:02d}:{local.minute:02d} ({zone})"


def journal_link(base_url: str) -> str:
    """Return the patient portal's access journal, on the host of ``base_url``."""
    parts = urlsplit(base_url)
    return f"{parts.scheme or 'https'}://{parts.netloc}{JOURNAL_PATH}"


def message_id_header(message_id: str, base_url: str) -> str:
    """Return the stable ``Message-ID`` of an outbox message."""
    host = urlsplit(base_url).hostname or "carnet.localhost"
    return f"<notice.{message_id}@{host}>"


def render(delivery: Delivery, *, sender: str, base_url: str, sent_at: datetime) -> EmailMessage:
    """Build the e-mail of one delivery (plain text, with an HTML alternative).

    Raises:
        ValueError: the delivery has no recipient.
    """
    if delivery.to is None:
        raise ValueError("A notice without an address cannot be rendered as an e-mail.")
    language = delivery.language if delivery.language in _LABELS else "fr"
    notice = delivery.notice
    labels = _LABELS[language]
    sep = labels["sep"]
    link = journal_link(base_url)
    facts = [
        (labels["who"], who(notice, language)),
        (labels["id"], _clean(notice.actor_id, 80) or "—"),
        (labels["when"], when(notice.at, language)),
        (labels["mode"], _MODES[notice.mode][language]),
    ]
    check = _CHECK.get(notice.event, _CHECK_DEFAULT)[language]
    what = _WHAT[notice.event][language]
    footer, link_label = labels["footer"], labels["journal"]
    if notice.event is NoticeEvent.PATIENT_MESSAGE:
        # To a professional: when, and where to read it; never who wrote nor what.
        parts = urlsplit(base_url)
        link = f"{parts.scheme or 'https'}://{parts.netloc}{PRO_INBOX_PATH}"
        facts = [(labels["when"], when(notice.at, language))]
        check, footer, link_label = "", _PRO_FOOTER[language], _PRO_LINK[language]
    text_lines = [
        labels["hello"],
        "",
        what,
        "",
        *(f"{label}{sep}{value}" for label, value in facts),
        "",
        *([check] if check else []),
        f"{link_label}{sep}{link}",
        "",
        "-- ",
        footer,
        "",
    ]
    email = EmailMessage()
    email["From"] = sender
    email["To"] = delivery.to
    email["Subject"] = _SUBJECTS[notice.event][language]
    email["Date"] = format_datetime(sent_at.astimezone(UTC))
    email["Message-ID"] = message_id_header(delivery.message_id, base_url)
    # RFC 3834: an automatic message; well-behaved responders do not answer it.
    email["Auto-Submitted"] = "auto-generated"
    email.set_content("\n".join(text_lines))
    escaped = html.escape
    rows = "".join(f"<tr><th scope='row'>{escaped(k)}</th><td>{escaped(v)}</td></tr>" for k, v in facts)
    email.add_alternative(
        f"<!DOCTYPE html><html lang='{language}'><body>"
        f"<p>{escaped(labels['hello'])}</p><p>{escaped(what)}</p>"
        f"<table>{rows}</table>"
        + (f"<p>{escaped(check)}</p>" if check else "")
        + f"<p><a href='{escaped(link)}'>{escaped(link_label)}</a></p>"
        f"<hr><p><small>{escaped(footer)}</small></p>"
        "</body></html>",
        subtype="html",
    )
    # Set last: set_content() and add_alternative() move or drop the Content-* headers.
    email["Content-Language"] = language
    return email
