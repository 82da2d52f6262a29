"""Languages of the portals: French by default, English on request.

Every visible string goes through :func:`translate` (``_`` in templates). A message id is the
English text itself; ``locales/fr.json`` maps each id to its French text (``locales/en.json``
may override an English wording, it is empty otherwise). A message missing from the French
catalog falls back to the English id: ``tests`` check that every id used is translated.

The language of a request is, in order: the ``carnet_lang`` cookie (set by ``GET
/language/<code>``, the switch in every page's header), then ``Accept-Language``, then French.

Placeholders use ``str.format`` names: ``_("{count} documents", count=3)``.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
LANGUAGE_COOKIE = "carnet_lang"
#: The name of each language, in that language (the switch shows it so).
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}


@cache
def catalog(language: str) -> dict[str, str]:
    """Return the message catalog of ``language`` (English ids → text), loaded once."""
    if language not in LANGUAGES:
        return {}
    try:
        raw = files("carnet.web").joinpath("locales", f"{language}.json").read_text(encoding="utf-8")
    except OSError:  # a missing catalog shows the English ids rather than failing every page
        return {}
    data: dict[str, str] = json.loads(raw)
    return data


def translate(language: str, message: str, /, **values: Any) -> str:
    """Return ``message`` in ``language``, its ``{placeholders}`` filled from ``values``."""
    text = catalog(language).get(message, message)
    return text.format(**values) if values else text


def negotiate(accept_language: str | None) -> str:
    """Pick the best offered language from an ``Accept-Language`` header (French if none fits)."""
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > best_q:
            best, best_q = primary, q
    return best


def language_of(request: Request) -> str:
    """Return the language of a request: its cookie, else ``Accept-Language``, else French."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    return negotiate(request.headers.get("accept-language"))


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


def format_date(value: str | None, language: str, *, with_time: bool = False) -> str:
    """Render a FHIR date or instant for people: ``12 mars 2024`` / ``12 March 2024`` (``—`` if none).

    Partial dates keep their precision (``2024``, ``mars 2024``); a time is shown (``HH:MM``,
    Paris time when the instant has an offset) only when asked and present. Text that is no
    date comes back unchanged.
    """
    if not value:
        return "—"
    months = _MONTHS.get(language, _MONTHS["en"])
    if with_time:
        value = _in_paris(value)
    day_part, _, time_part = value.partition("T")
    pieces = day_part.split("-")
    try:
        if len(pieces) == 1:
            text = str(int(pieces[0]))
        elif len(pieces) == 2:
            text = f"{months[int(pieces[1]) - 1]} {int(pieces[0])}"
        else:
            text = f"{int(pieces[2])} {months[int(pieces[1]) - 1]} {int(pieces[0])}"
    except (ValueError, IndexError):
        return value
    if with_time and len(time_part) >= 5:
        text += f", {time_part[:5]}"
    return text


def _in_paris(value: str) -> str:
    """An instant with an offset (``…Z``, ``…+02:00``) as Europe/Paris local time; other text as is."""
    if "T" not in value:
        return value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    try:
        return moment.astimezone(ZoneInfo("Europe/Paris")).isoformat()
    except ZoneInfoNotFoundError:  # no time zone data on this system: the instant as given
        return value
