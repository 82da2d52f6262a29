"""Dates and times of care in metropolitan France, written the FHIR way and the CDA way.

Local times carry the Paris offset, ``+01:00`` in winter and ``+02:00`` in summer (from the last
Sunday of March to the last Sunday of October, as EU law has it since 1996), computed here so
that the output does not depend on the machine's time-zone database.
"""

from __future__ import annotations

import calendar
import random
from datetime import date, datetime, time, timedelta, timezone


def _last_sunday(year: int, month: int) -> date:
    day = date(year, month + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() + 1) % 7)


def paris_time(day: date, at: time) -> datetime:
    """Return ``day`` at local time ``at`` in Paris, with its UTC offset."""
    summer = _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)
    return datetime.combine(day, at, tzinfo=timezone(timedelta(hours=2 if summer else 1)))


def fhir_instant(moment: datetime) -> str:
    """Format an aware datetime as a FHIR ``instant``/``dateTime``: ``2024-03-12T10:30:00+01:00``."""
    return moment.isoformat(timespec="seconds")


def cda_ts(moment: datetime) -> str:
    """Format an aware datetime as a CDA ``TS``: ``20240312103000+0100``."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def french_date(day: date) -> str:
    """Format a date the French way: ``12/03/2024``."""
    return day.strftime("%d/%m/%Y")


def draw_day(rng: random.Random, start: date, end: date) -> date:
    """Draw a day in ``[start, end]``, or ``start`` when the range is empty."""
    span = (end - start).days
    return start + timedelta(days=rng.randint(0, span)) if span > 0 else start


def draw_office_time(rng: random.Random, day: date) -> datetime:
    """Draw a moment of ``day`` between 08:00 and 19:00, on a five-minute mark, in Paris."""
    minutes = rng.randrange(8 * 60, 19 * 60, 5)
    return paris_time(day, time(minutes // 60, minutes % 60))


def add_years(day: date, years: int) -> date:
    """Return the same day ``years`` later (28 February for a 29 February that does not exist)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def add_months(day: date, months: int) -> date:
    """Return the same day ``months`` later, clamped to the end of shorter months."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def age_on(birth: date, day: date) -> int:
    """Return the age in whole years on ``day`` of someone born on ``birth``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
