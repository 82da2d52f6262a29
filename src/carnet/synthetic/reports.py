"""The words of each document: a consultation note, a discharge letter, a lab report…

Each ``write_*`` function turns the patient's profile into a :class:`Report` — title, author,
dates, sections of paragraphs and tables — that :mod:`carnet.synthetic.pdf` lays out as a PDF and
:mod:`carnet.synthetic.cda` wraps in a CDA document. ``rank`` numbers a patient's documents of
one kind: 0 is the most recent, 1 the one before, and so on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeVar

from carnet.synthetic.clinical import PARACETAMOL, PARACETAMOL_CHILD, SCHEDULE, Drug
from carnet.synthetic.patient import Person
from carnet.synthetic.professionals import Discipline, Organization, Pool, Professional
from carnet.synthetic.profile import (
    HISTORY_YEARS,
    LAB_TESTS,
    LabResult,
    MedicalProfile,
    Stay,
    Vaccination,
    Visit,
)
from carnet.synthetic.timestamps import (
    add_months,
    add_years,
    age_on,
    draw_day,
    draw_office_time,
    french_date,
    paris_time,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """A titled part of a report: paragraphs, then an optional table (first row is the header)."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    table: tuple[tuple[str, ...], ...] = ()
    loinc: str | None = None
    """The LOINC code of the section, for structured (level 3) CDA bodies."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What a document says, who wrote it, and when."""

    title: str
    author: Professional | None
    """The professional who signs; ``None`` for the insurer's and the patient's own documents."""
    organization: Organization | None
    """The organization that holds the document (custodian); ``None`` for the patient's own."""
    created: datetime
    period: tuple[datetime, datetime]
    """The care the document reports on, start and end."""
    sections: tuple[Section, ...]
    recipient: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What every writer reads: the patient, the profile, the pool and the date of the record."""

    rng: random.Random
    person: Person
    profile: MedicalProfile
    pool: Pool
    as_of: date

    @property
    def start(self) -> date:
        """Return the first day of the record's history."""
        return max(self.person.birth_date, add_years(self.as_of, -HISTORY_YEARS))

    def age_on(self, day: date) -> int:
        """Return the patient's age on ``day``."""
        return age_on(self.person.birth_date, day)


def _nth_latest(items: Sequence[_T], rank: int) -> _T:
    return items[-1 - rank % len(items)]


def _decimal(value: float, digits: int) -> str:
    """Format a number the French way: ``5,41``."""
    return f"{value:.{digits}f}".replace(".", ",")


def _money(amount: float) -> str:
    return f"{amount:,.2f}".replace(",", " ").replace(".", ",")


def _history(ctx: Context, on: date, *, exclude: str | None = None) -> Section:
    diagnoses = [
        d
        for d in ctx.profile.diagnoses
        if d.onset <= on and (d.abated is None or d.abated > on) and d.icd10 != exclude
    ]
    lines = tuple(f"{d.display} (CIM-10 {d.icd10}), depuis {d.onset.year}." for d in diagnoses)
    allergies = tuple(
        f"Allergie : {a.allergen.display} ({a.reaction[1].lower()})."
        for a in ctx.profile.allergies
        if a.recorded <= on
    )
    return Section(
        heading="Antécédents et allergies",
        paragraphs=(lines or ("Pas d'antécédent notable.",)) + (allergies or ("Aucune allergie connue.",)),
    )


def _treatments_on(ctx: Context, on: date) -> list[Drug]:
    return [t.drug for t in ctx.profile.treatments if t.start <= on and (t.end is None or t.end >= on)]


def _drug_lines(drugs: list[Drug]) -> tuple[str, ...]:
    return tuple(f"{d.label} : {d.dosage}." for d in drugs) or ("Aucun traitement au long cours.",)


# Consultation, prescription, dispensation.


def _visit(ctx: Context, rank: int) -> Visit:
    return _nth_latest(ctx.profile.visits, rank)


_EXAM_SENTENCES = (
    "Auscultation cardio-pulmonaire sans particularité.",
    "Abdomen souple, dépressible et indolore.",
    "Pas d'oedème des membres inférieurs.",
    "Examen neurologique sommaire normal.",
    "Pouls régulier, bien frappé.",
    "Tympans normaux, pas d'adénopathie cervicale.",
    "État général conservé, apyrexie.",
)


def write_consultation(ctx: Context, rank: int) -> Report:
    """Write the consultation note (compte rendu de consultation, LOINC 11488-4) of a visit."""
    visit = _visit(ctx, rank)
    author = visit.professional
    age = ctx.age_on(visit.day)
    if visit.reason is None:
        months = (visit.day - ctx.person.birth_date).days * 12 // 365
        motive = (
            f"Examen systématique de l'enfant de {months} mois."
            if age < 2
            else ("Consultation de suivi et de prévention.")
        )
    elif visit.reason.encounter_diagnosis:
        motive = f"Consultation pour {visit.reason.display.lower()}."
    else:
        motive = f"Suivi : {visit.reason.display.lower()}."
    exam = [f"Poids {visit.weight_kg:.1f} kg".replace(".", ",")]
    if visit.height_cm is not None:
        exam.append(f"taille {visit.height_cm:.1f} cm, IMC {visit.bmi} kg/m²".replace(".", ","))
    if visit.blood_pressure is not None:
        exam.append("pression artérielle {}/{} mmHg".format(*visit.blood_pressure))
    findings = (", ".join(exam) + ".", *ctx.rng.sample(_EXAM_SENTENCES, 3))
    if visit.reason is not None and visit.reason.encounter_diagnosis:
        conclusion = (
            f"Diagnostic retenu : {visit.reason.display} (CIM-10 {visit.reason.icd10}). "
            "Traitement symptomatique, reconsulter en l'absence d'amélioration sous 72 heures."
        )
    elif visit.reason is not None:
        conclusion = (
            "Pathologie équilibrée sous traitement. Poursuite du traitement en cours, contrôle dans 3 mois."
        )
    else:
        conclusion = (
            "Examen normal. Croissance et développement harmonieux."
            if age < 18
            else ("Bilan de prévention réalisé. Vaccinations vérifiées.")
        )
    title = "Compte rendu de consultation"
    if author.specialty not in (None, "SM54"):
        title += f" - {author.role_label.split(' - ')[-1].removesuffix(' (SM)')}"
    return Report(
        title=title,
        author=author,
        organization=author.organization,
        created=visit.moment + timedelta(minutes=20),
        period=(visit.moment, visit.moment + timedelta(minutes=20)),
        sections=(
            Section(heading="Motif de consultation", paragraphs=(motive,)),
            _history(ctx, visit.day, exclude=visit.reason.icd10 if visit.reason else None),
            Section(heading="Examen clinique", paragraphs=findings),
            Section(heading="Conclusion", paragraphs=(conclusion,)),
            Section(heading="Traitement en cours", paragraphs=_drug_lines(_treatments_on(ctx, visit.day))),
        ),
        recipient=None
        if author is ctx.profile.general_practitioner
        else ctx.profile.general_practitioner.display_name,
    )


def _prescribed(ctx: Context, visit: Visit) -> tuple[Professional, list[Drug], bool]:
    """Return the prescriber, the drugs, and whether it is a renewal of a long-term treatment."""
    prescriber = (
        visit.professional if visit.professional.profession == "10" else ctx.profile.general_practitioner
    )
    started = [t.drug for t in ctx.profile.treatments if t.start == visit.day and t.end is not None]
    if started:
        return prescriber, started, False
    ongoing = [t.drug for t in ctx.profile.treatments if t.start <= visit.day and t.end is None]
    if ongoing:
        return prescriber, ongoing, True
    return prescriber, [PARACETAMOL_CHILD if ctx.age_on(visit.day) < 12 else PARACETAMOL], False


def write_prescription(ctx: Context, rank: int) -> Report:
    """Write the prescription (ordonnance, LOINC 57833-6) given at a visit."""
    visit = _visit(ctx, rank)
    prescriber, drugs, renewal = _prescribed(ctx, visit)
    lines = tuple(f"{i}. {d.label}. {d.dosage}." for i, d in enumerate(drugs, start=1))
    duration = (
        "Traitement pour 3 mois, à renouveler 3 fois." if renewal else "Durée selon la posologie indiquée."
    )
    return Report(
        title="Ordonnance",
        author=prescriber,
        organization=prescriber.organization,
        created=visit.moment + timedelta(minutes=15),
        period=(visit.moment, visit.moment + timedelta(minutes=15)),
        sections=(
            Section(
                heading="Prescription de médicaments",
                paragraphs=(
                    *lines,
                    duration,
                    f"Poids du patient : {visit.weight_kg:.1f} kg.".replace(".", ",", 1),
                ),
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class Dispensing:
    """One visit to the pharmacy: its report, and what was handed over (drugs, boxes of each, when)."""

    report: Report
    drugs: tuple[Drug, ...]
    boxes: int
    prescriber: Professional


def write_dispensation(ctx: Context, rank: int) -> Report:
    """Write the dispensation record (dispensation médicamenteuse, LOINC 60593-1) at the pharmacy."""
    return draw_dispensing(ctx, rank).report


def draw_dispensing(ctx: Context, rank: int) -> Dispensing:
    """Draw the ``rank``-th latest dispensing: the drugs of a visit's prescription, days later."""
    visit = _visit(ctx, rank)
    prescriber, drugs, renewal = _prescribed(ctx, visit)
    day = min(ctx.as_of, visit.day + timedelta(days=ctx.rng.randint(0, 3)))
    moment = draw_office_time(ctx.rng, day)
    if moment < visit.moment:
        moment = visit.moment + timedelta(hours=1)
    pharmacist = ctx.profile.pharmacist
    rows = [("Médicament", "Boîtes", "Posologie")]
    rows += [(d.label, str(3 if renewal else 1), d.dosage) for d in drugs]
    report = Report(
        title="Dispensation médicamenteuse",
        author=pharmacist,
        organization=pharmacist.organization,
        created=moment,
        period=(moment, moment),
        sections=(
            Section(
                heading="Délivrance",
                paragraphs=(
                    f"Délivrance sur présentation de l'ordonnance de {prescriber.display_name} "
                    f"du {french_date(visit.day)}.",
                    "Conseils de bon usage donnés au patient. Substitution par un générique acceptée.",
                ),
                table=tuple(rows),
            ),
        ),
    )
    return Dispensing(report=report, drugs=tuple(drugs), boxes=3 if renewal else 1, prescriber=prescriber)


# Laboratory.


def write_lab_report(ctx: Context, rank: int) -> Report:
    """Write the lab report (compte rendu d'examens biologiques, LOINC 11502-2)."""
    moments = sorted({result.moment for result in ctx.profile.labs})
    if moments:
        moment = _nth_latest(moments, rank)
    else:
        day = draw_day(ctx.rng, ctx.start, ctx.as_of)
        minutes = ctx.rng.randrange(7 * 60 + 30, 10 * 60, 5)
        moment = paris_time(day, time(minutes // 60, minutes % 60))
    results = {r.loinc: r for r in ctx.profile.labs if r.moment == moment}
    earlier = [r for r in ctx.profile.labs if r.moment < moment and r.loinc == "15074-8"]
    biologist = (
        next(iter(results.values())).biologist if results else ctx.rng.choice(ctx.pool.of(Discipline.BIOLOGY))
    )
    chemistry = _chemistry_rows(ctx, moment, results, earlier)
    haematology = _haematology_rows(ctx.rng, female=ctx.person.sex == "female")
    sections = (
        Section(
            heading="Biochimie",
            loinc="18719-5",
            paragraphs=(
                f"Prélèvement du {french_date(moment.date())} à {moment:%H:%M}, à jeun. "
                f"Prescripteur : {ctx.profile.general_practitioner.display_name}.",
            ),
            table=chemistry,
        ),
        Section(heading="Hématologie", table=haematology, loinc="18723-7"),
        Section(
            heading="Commentaire du biologiste",
            loinc="48767-8",
            paragraphs=(
                "Résultats validés biologiquement. Interprétation à confronter aux données cliniques.",
            ),
        ),
    )
    validated = moment + timedelta(hours=5)
    return Report(
        title="Compte rendu d'examens biologiques",
        author=biologist,
        organization=biologist.organization,
        created=validated,
        period=(moment, validated),
        sections=sections,
        recipient=ctx.profile.general_practitioner.display_name,
    )


_LAB_HEADER = ("Analyse", "Résultat", "Unité", "Valeurs de référence", "Antériorité")


def _chemistry_rows(
    ctx: Context, moment: datetime, results: dict[str, LabResult], earlier: list[LabResult]
) -> tuple[tuple[str, ...], ...]:
    """Return the biochemistry table: the stored results, then values drawn for this report."""
    rng, age, female = ctx.rng, ctx.age_on(moment.date()), ctx.person.sex == "female"
    rows: list[tuple[str, ...]] = [_LAB_HEADER]
    for loinc, result in sorted(results.items()):
        _, text, unit, low, high = LAB_TESTS[loinc]
        previous = _decimal(earlier[-1].value, 2) if loinc == "15074-8" and earlier else ""
        digits = 2 if unit == "mmol/L" else 1
        rows.append(
            (
                text,
                _decimal(result.value, digits),
                unit,
                f"{_decimal(low, 1)} - {_decimal(high, 1)}",
                previous,
            )
        )
    if age < 12:
        rows.append(("Ferritine", f"{max(8.0, rng.gauss(45, 15)):.0f}", "µg/L", "15 - 150", ""))
        return tuple(rows)
    renal = 1.4 if ctx.profile.has("N18.3") else 1.0
    creatinine = rng.gauss(70 if female else 85, 12) * renal
    rows.append(("Créatinine", f"{creatinine:.0f}", "µmol/L", "45 - 90" if female else "60 - 110", ""))
    if age >= 18:
        total = rng.gauss(2.0, 0.3)
        hdl = rng.gauss(0.6 if female else 0.5, 0.1)
        triglycerides = max(0.4, rng.gauss(1.1, 0.35))
        rows += [
            ("Cholestérol total", _decimal(total, 2), "g/L", "< 2,00", ""),
            ("Cholestérol HDL", _decimal(hdl, 2), "g/L", "> 0,40", ""),
            ("Cholestérol LDL (calculé)", _decimal(total - hdl - triglycerides / 5, 2), "g/L", "< 1,60", ""),
            ("Triglycérides", _decimal(triglycerides, 2), "g/L", "< 1,50", ""),
        ]
    return tuple(rows)


def _haematology_rows(rng: random.Random, *, female: bool) -> tuple[tuple[str, ...], ...]:
    """Return the haematology table: blood count and C-reactive protein."""
    haemoglobin = rng.gauss(13.2 if female else 14.8, 1.0)
    return (
        _LAB_HEADER,
        ("Hémoglobine", _decimal(haemoglobin, 1), "g/dL", "12,0 - 16,0" if female else "13,0 - 17,0", ""),
        ("Leucocytes", _decimal(rng.gauss(7.0, 1.5), 1), "G/L", "4,0 - 10,0", ""),
        ("Plaquettes", f"{rng.gauss(250, 50):.0f}", "G/L", "150 - 400", ""),
        ("Protéine C réactive", _decimal(max(0.5, rng.gauss(3, 2)), 1), "mg/L", "< 5,0", ""),
    )


# Imaging.

_IMAGING: tuple[tuple[str, str, str, str], ...] = (
    # (exam, technique, result, conclusion) chosen by age and problems below.
    (
        "Radiographie du thorax de face",
        "Cliché de face en inspiration, debout.",
        "Parenchyme pulmonaire normalement aéré. Pas d'épanchement pleural. "
        "Silhouette cardiaque de taille normale.",
        "Radiographie thoracique sans anomalie décelable.",
    ),
    (
        "Échographie abdominale",
        "Examen réalisé à jeun, sonde convexe.",
        "Foie de taille normale, d'échostructure homogène. Vésicule alithiasique. "
        "Reins de taille normale sans dilatation.",
        "Échographie abdominale normale.",
    ),
    (
        "Radiographie du genou droit",
        "Clichés de face en charge et de profil.",
        "Pincement fémoro-tibial médial modéré, ostéophytes marginaux. "
        "Pas d'épanchement articulaire visible.",
        "Gonarthrose fémoro-tibiale médiale modérée.",
    ),
    (
        "Mammographie bilatérale de dépistage",
        "Deux incidences par sein, face et oblique externe.",
        "Seins de densité de type B. Pas de masse, pas de foyer de microcalcifications suspect.",
        "Classification ACR 1 bilatérale. Prochain dépistage dans deux ans.",
    ),
    (
        "Scanner cérébral sans injection",
        "Acquisition hélicoïdale sans injection de produit de contraste.",
        "Pas de saignement intra- ou extra-axial. Pas d'effet de masse. Discrète leucopathie vasculaire.",
        "Pas de lésion hémorragique. Leucopathie vasculaire modérée.",
    ),
    (
        "Ostéodensitométrie",
        "Absorptiométrie biphotonique au rachis lombaire et à la hanche.",
        "T-score rachis lombaire -2,6 ; T-score col fémoral -2,1.",
        "Ostéoporose densitométrique au rachis lombaire.",
    ),
    (
        "Échographie des hanches",
        "Examen selon la technique de Graf.",
        "Hanches de type Ia bilatéralement, couverture cotyloïdienne normale.",
        "Hanches normales.",
    ),
    (
        "Radiographie du poignet gauche",
        "Clichés de face et de profil.",
        "Pas de trait de fracture visible. Interlignes articulaires respectés.",
        "Pas de lésion osseuse traumatique.",
    ),
)


def _imaging_exam(ctx: Context, day: date) -> tuple[str, str, str, str]:
    age, female = ctx.age_on(day), ctx.person.sex == "female"
    by_name = {exam[0]: exam for exam in _IMAGING}
    options = ["Radiographie du thorax de face", "Échographie abdominale"]
    if age < 1:
        options = ["Échographie des hanches"]
    elif age < 18:
        options.append("Radiographie du poignet gauche")
    else:
        problems = {d.icd10 for d in ctx.profile.diagnoses}
        if "M17.9" in problems:
            options.append("Radiographie du genou droit")
        if "M81.9" in problems:
            options.append("Ostéodensitométrie")
        if problems & {"G43.9", "G30.9", "I63.9"}:
            options.append("Scanner cérébral sans injection")
        if female and 50 <= age <= 74:
            options += ["Mammographie bilatérale de dépistage"] * 2
    return by_name[ctx.rng.choice(options)]


def write_imaging_report(ctx: Context, rank: int) -> Report:
    """Write the imaging report (compte rendu d'imagerie médicale, LOINC 18748-4)."""
    day = draw_day(ctx.rng, ctx.start, ctx.as_of - timedelta(days=1))
    moment = draw_office_time(ctx.rng, day)
    exam, technique, result, conclusion = _imaging_exam(ctx, day)
    radiologist = ctx.rng.choice(ctx.pool.of(Discipline.RADIOLOGY))
    indication = "Bilan demandé par le médecin traitant."
    return Report(
        title=f"Compte rendu d'imagerie - {exam}",
        author=radiologist,
        organization=radiologist.organization,
        created=moment + timedelta(hours=2),
        period=(moment, moment + timedelta(minutes=30)),
        sections=(
            Section(heading="Indication", paragraphs=(indication,)),
            Section(
                heading="Technique", paragraphs=(technique, "Dose et paramètres d'acquisition archivés.")
            ),
            Section(heading="Résultats", paragraphs=(result,)),
            Section(heading="Conclusion", paragraphs=(conclusion,)),
        ),
        recipient=ctx.profile.general_practitioner.display_name,
    )


# Hospital discharge.


def write_discharge_letter(ctx: Context, rank: int) -> Report:
    """Write the discharge letter (lettre de liaison à la sortie, LOINC 11490-0) of a stay."""
    stay: Stay = _nth_latest(ctx.profile.stays, rank)
    physician = stay.physician
    admitted = paris_time(stay.admitted, time(ctx.rng.randint(8, 22), 0))
    discharged = paris_time(stay.discharged, time(ctx.rng.randint(10, 16), 30))
    if discharged <= admitted:
        discharged = admitted + timedelta(hours=6)
    drugs = [t.drug for t in stay.treatments] + [
        d for d in _treatments_on(ctx, stay.admitted) if d not in [t.drug for t in stay.treatments]
    ]
    service = physician.service or "Service de médecine"
    return Report(
        title="Lettre de liaison à la sortie",
        author=physician,
        organization=physician.organization,
        created=discharged,
        period=(admitted, discharged),
        sections=(
            Section(
                heading="Séjour",
                paragraphs=(
                    f"{service}, du {french_date(stay.admitted)} au {french_date(stay.discharged)}.",
                    f"Motif d'hospitalisation : {stay.episode.display} (CIM-10 {stay.episode.icd10}).",
                ),
            ),
            _history(ctx, stay.admitted, exclude=stay.episode.icd10),
            Section(heading="Synthèse du séjour", paragraphs=(stay.episode.summary,)),
            Section(heading="Traitement de sortie", paragraphs=_drug_lines(drugs)),
            Section(
                heading="Suites à donner",
                paragraphs=(
                    "Consultation de contrôle chez le médecin traitant dans les quinze jours.",
                    "Reconsulter en urgence en cas de fièvre, de douleur ou d'aggravation.",
                ),
            ),
        ),
        recipient=ctx.profile.general_practitioner.display_name,
    )


# Vaccinations.


def write_vaccination_history(ctx: Context, rank: int) -> Report:
    """Write the vaccination history (historique des vaccinations, LOINC 11369-6)."""
    vaccinations = ctx.profile.vaccinations
    day = _nth_latest(vaccinations, rank).day if vaccinations else draw_day(ctx.rng, ctx.start, ctx.as_of)
    day = max(day, ctx.start)
    moment = draw_office_time(ctx.rng, day)
    done = [v for v in vaccinations if v.day <= day]
    author = ctx.profile.general_practitioner
    rows: list[tuple[str, ...]] = [("Date", "Vaccin", "Maladies ciblées", "Dose", "Lot", "Vaccinateur")]
    rows += [_vaccination_row(v) for v in done] or [("-", "Aucune vaccination enregistrée", "", "", "", "")]
    next_dose = _next_dose(ctx, day)
    return Report(
        title="Historique des vaccinations",
        author=author,
        organization=author.organization,
        created=moment,
        period=(
            paris_time(done[0].day if done else day, time(9, 0)),
            moment,
        ),
        sections=(
            Section(
                heading="Vaccinations",
                loinc="11369-6",
                paragraphs=() if done else ("Aucune vaccination enregistrée.",),
                table=tuple(rows),
            ),
            Section(heading="Prochaine vaccination recommandée", paragraphs=(next_dose,), loinc="18776-5"),
        ),
    )


def _vaccination_row(vaccination: Vaccination) -> tuple[str, ...]:
    dose = vaccination.dose
    return (
        french_date(vaccination.day),
        dose.product,
        dose.diseases,
        str(dose.number),
        vaccination.lot,
        vaccination.performer.display_name,
    )


def _next_dose(ctx: Context, after: date) -> str:
    birth = ctx.person.birth_date
    for dose in SCHEDULE:
        if birth.year < dose.since_year or (dose.sex is not None and dose.sex != ctx.person.sex):
            continue
        due = add_months(birth, dose.age_months)
        if due > after:
            return f"{dose.diseases} ({dose.product}), à partir du {french_date(due)}."
    return "Rappel diphtérie, tétanos, poliomyélite tous les dix ans ; grippe chaque automne."


# Reimbursements.


def write_reimbursements(ctx: Context, rank: int) -> Report:
    """Write the insurer's reimbursement history (historique des remboursements) of 24 months."""
    day = ctx.as_of - timedelta(days=7 * rank + ctx.rng.randint(1, 6))
    day = max(day, ctx.person.birth_date)
    since = add_months(day, -24)
    rng = ctx.rng
    lines: list[tuple[date, str, str, float, float]] = []
    for visit in ctx.profile.visits:
        if since <= visit.day <= day:
            specialist = visit.professional.specialty not in ("SM54", None)
            fee = 30.0 if not specialist else rng.choice((30.0, 50.0, 55.0))
            act = (
                "Consultation de spécialiste (APC)" if specialist else "Consultation de médecine générale (G)"
            )
            lines.append((visit.day, act, visit.professional.display_name, fee, max(0.0, fee * 0.7 - 2)))
            amount = round(rng.uniform(4, 90), 2)
            lines.append(
                (
                    visit.day,
                    "Pharmacie - médicaments remboursables",
                    ctx.profile.pharmacist.organization.name,
                    amount,
                    round(amount * 0.65, 2),
                )
            )
    for moment in sorted({r.moment for r in ctx.profile.labs}):
        if since <= moment.date() <= day:
            amount = round(rng.uniform(12, 45), 2)
            lines.append(
                (
                    moment.date(),
                    "Analyses de biologie médicale",
                    "Laboratoire",
                    amount,
                    round(amount * 0.6, 2),
                )
            )
    for stay in ctx.profile.stays:
        if since <= stay.discharged <= day:
            nights = max(1, (stay.discharged - stay.admitted).days)
            amount = round(nights * rng.uniform(700, 1400), 2)
            lines.append(
                (
                    stay.discharged,
                    "Hospitalisation - frais de séjour",
                    stay.physician.organization.name,
                    amount,
                    amount - 20 * nights,
                )
            )
    for vaccination in ctx.profile.vaccinations:
        if since <= vaccination.day <= day:
            lines.append((vaccination.day, f"Vaccin {vaccination.dose.product}", "Pharmacie", 12.0, 12.0))
    lines.sort(key=lambda line: line[0], reverse=True)
    rows = [
        ("Date des soins", "Prestation", "Professionnel ou établissement", "Montant (EUR)", "Remboursé (EUR)")
    ]
    rows += [(french_date(d), act, who, _money(amount), _money(paid)) for d, act, who, amount, paid in lines]
    total = sum(line[4] for line in lines)
    moment = paris_time(day, time(3, 0))
    return Report(
        title="Historique des remboursements",
        author=None,
        organization=ctx.pool.insurer,
        created=moment,
        period=(paris_time(since, time(0, 0)), moment),
        sections=(
            Section(
                heading=f"Soins remboursés du {french_date(since)} au {french_date(day)}",
                paragraphs=(
                    f"{len(lines)} prestation(s), {_money(total)} EUR remboursés par l'Assurance Maladie."
                    if lines
                    else "Aucun remboursement sur la période.",
                ),
                table=tuple(rows) if lines else (),
            ),
        ),
    )


# The patient's own document.


def write_patient_summary(ctx: Context, rank: int) -> Report:
    """Write a note the patient uploads (autre document du patient), as a plain PDF."""
    day = draw_day(ctx.rng, ctx.start, ctx.as_of)
    moment = paris_time(day, time(ctx.rng.randint(18, 22), ctx.rng.randrange(0, 60, 5)))
    problems = tuple(d.display + "." for d in ctx.profile.active_diagnoses if d.onset <= day) or (
        "Je n'ai pas de problème de santé connu.",
    )
    relative = ctx.person.relative
    contact = (
        f"{relative.given} {relative.family} ({relative.relationship.display.lower()}), {relative.phone}."
        if relative
        else "Non renseignée."
    )
    return Report(
        title="Mes informations de santé",
        author=None,
        organization=None,
        created=moment,
        period=(moment, moment),
        sections=(
            Section(heading="Mes problèmes de santé", paragraphs=problems),
            Section(heading="Mes traitements", paragraphs=_drug_lines(_treatments_on(ctx, day))),
            Section(
                heading="Mes allergies",
                paragraphs=tuple(a.allergen.display + "." for a in ctx.profile.allergies) or ("Aucune.",),
            ),
            Section(heading="Personne à prévenir", paragraphs=(contact,)),
        ),
    )


#: Sentences for the pages that bring a PDF up to a requested size: advice a patient takes home.
FILLER_SENTENCES: tuple[str, ...] = (
    "Une activité physique régulière, adaptée à votre état de santé, est recommandée chaque jour.",
    "Pensez à apporter vos ordonnances et vos derniers résultats d'analyses à chaque consultation.",
    "En cas de fièvre supérieure à 38,5 °C persistant plus de 48 heures, contactez votre médecin traitant.",
    "Ne modifiez pas vos traitements sans avis médical, même si vous vous sentez mieux.",
    "Une alimentation variée, riche en fruits et légumes et pauvre en sel, protège votre coeur.",
    "Le tabac est un facteur de risque majeur : un accompagnement au sevrage peut vous être proposé.",
    "Conservez vos médicaments à l'abri de la chaleur et hors de portée des enfants.",
    "Vérifiez que vos vaccinations sont à jour en consultant votre carnet de vaccination.",
    "En cas d'urgence vitale, composez le 15 (SAMU) ou le 112 depuis un téléphone portable.",
    "Signalez à tout professionnel de santé vos allergies connues avant une prescription.",
    "Le sommeil joue un rôle important : essayez de garder des horaires réguliers.",
    "Limitez votre consommation d'alcool à deux verres par jour au maximum, et pas tous les jours.",
    "Les résultats de vos examens sont versés dans votre dossier médical partagé.",
    "Vous pouvez désigner une personne de confiance qui vous accompagnera dans vos démarches.",
    "Rapportez les médicaments non utilisés à votre pharmacie pour qu'ils soient détruits sans risque.",
    "Une prise de sang à jeun suppose de ne rien avoir mangé depuis au moins huit heures.",
    "Mesurez votre pression artérielle à domicile matin et soir, trois jours de suite, avant de consulter.",
    "L'automesure de la glycémie aide à adapter le traitement : notez vos résultats dans un carnet.",
    "Hydratez-vous suffisamment, surtout en période de forte chaleur.",
    "En cas d'effet indésirable, parlez-en à votre médecin ou à votre pharmacien.",
)
