"""A patient's medical profile (profil médical): the facts the resources and documents are made of.

The facts hang together: a penicillin allergy keeps amoxicillin off the prescriptions, an obese
patient's weight gives a BMI over 30, a diabetic has quarterly glycaemia and HbA1c, vaccines follow
the schedule of the patient's birth year, and every measure is taken at a visit by a named
professional. Documents are written from these facts, so a report says what the record holds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from carnet.synthetic.clinical import (
    ACUTE_EPISODES,
    ALLERGENS,
    AMOXICILLIN,
    AMOXICILLIN_CHILD,
    BMI,
    COVID19,
    DISEASES,
    HEIGHT_CM,
    HOSPITAL_STAYS,
    INFLUENZA,
    PARACETAMOL,
    PARACETAMOL_CHILD,
    SCHEDULE,
    VITAMIN_D_INFANT,
    Allergen,
    Dose,
    Drug,
    Episode,
    interpolate,
)
from carnet.synthetic.identifiers import new_uuid, urn_uuid
from carnet.synthetic.patient import Person
from carnet.synthetic.professionals import Discipline, Pool, Professional
from carnet.synthetic.timestamps import (
    add_months,
    add_years,
    age_on,
    draw_day,
    draw_office_time,
    paris_time,
)

#: How far back the record goes: three years of care, as a DMP fed since its creation would hold.
HISTORY_YEARS = 3
#: Vaccinations older than this are not in the electronic record.
VACCINATION_HISTORY_YEARS = 25

#: LOINC code → (display, French text, unit, reference range low, high).
LAB_TESTS: dict[str, tuple[str, str, str, float, float]] = {
    "15074-8": ("Glucose [Moles/volume] in Blood", "Glycémie à jeun", "mmol/L", 3.9, 6.1),
    "4548-4": ("Hemoglobin A1c/Hemoglobin.total in Blood", "Hémoglobine glyquée (HbA1c)", "%", 4.0, 6.0),
}

_ALLERGY_DRUGS: dict[str, tuple[str, ...]] = {
    "764146007": ("J01CA04",),
    "372687004": ("J01CA04",),
    "387458008": ("B01AC06", "M01AE01"),
    "387207008": ("M01AE01", "B01AC06"),
}
_FLU_RISK = frozenset({"E11.9", "J45.9", "J44.9", "I50.9", "I25.9", "I48.9", "N18.3"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    """A problem on the list: chronic disease, acute illness or the reason of a hospital stay."""

    uuid: str
    icd10: str
    display: str
    onset: date
    abated: date | None
    """When it resolved; ``None`` while it is active."""
    recorder: Professional
    encounter_diagnosis: bool = False

    @property
    def url(self) -> str:
        """Return the ``urn:uuid:`` of the Condition entry."""
        return urn_uuid(self.uuid)


@dataclass(frozen=True, slots=True, kw_only=True)
class Treatment:
    """A medicine the patient takes or took."""

    uuid: str
    drug: Drug
    start: date
    end: date | None
    prescriber: Professional
    reason: Diagnosis | None

    @property
    def is_active(self) -> bool:
        """Tell whether the patient still takes it."""
        return self.end is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Allergy:
    """An allergy or intolerance, with the reaction it gives."""

    uuid: str
    allergen: Allergen
    reaction: tuple[str, str]
    recorded: date
    recorder: Professional

    @property
    def is_severe(self) -> bool:
        """Tell whether the reaction is life-threatening (anaphylaxis, angio-oedema)."""
        return self.reaction[0] in ("39579001", "41291007")


@dataclass(frozen=True, slots=True, kw_only=True)
class Vaccination:
    """One vaccine injection (or oral dose)."""

    uuid: str
    dose: Dose
    day: date
    lot: str
    performer: Professional


@dataclass(frozen=True, slots=True, kw_only=True)
class Visit:
    """A consultation, with the measures taken during it."""

    moment: datetime
    professional: Professional
    reason: Diagnosis | None
    """The illness seen, or ``None`` for a check-up or a follow-up."""
    weight_kg: float
    height_cm: float | None
    blood_pressure: tuple[int, int] | None
    weight_uuid: str
    height_uuid: str
    pressure_uuid: str

    @property
    def day(self) -> date:
        """Return the day of the visit."""
        return self.moment.date()

    @property
    def bmi(self) -> float | None:
        """Return the body-mass index when the height was measured."""
        if self.height_cm is None:
            return None
        return round(self.weight_kg / (self.height_cm / 100) ** 2, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabResult:
    """A laboratory result stored as an Observation: fasting glycaemia or HbA1c."""

    uuid: str
    loinc: str
    moment: datetime
    value: float
    biologist: Professional


@dataclass(frozen=True, slots=True, kw_only=True)
class Stay:
    """A hospital stay, which the discharge letter (lettre de liaison) sums up."""

    episode: Episode
    diagnosis: Diagnosis
    admitted: date
    discharged: date
    physician: Professional
    treatments: tuple[Treatment, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MedicalProfile:
    """Everything known about a patient's health, in the order a summary lists it."""

    general_practitioner: Professional
    """The treating physician (médecin traitant), a paediatrician for some children."""
    pharmacist: Professional
    diagnoses: tuple[Diagnosis, ...]
    treatments: tuple[Treatment, ...]
    allergies: tuple[Allergy, ...]
    vaccinations: tuple[Vaccination, ...]
    visits: tuple[Visit, ...]
    labs: tuple[LabResult, ...]
    stays: tuple[Stay, ...]

    @property
    def active_diagnoses(self) -> tuple[Diagnosis, ...]:
        """Return the problems still active."""
        return tuple(d for d in self.diagnoses if d.abated is None)

    @property
    def active_treatments(self) -> tuple[Treatment, ...]:
        """Return the medicines still taken."""
        return tuple(t for t in self.treatments if t.is_active)

    def has(self, icd10: str) -> bool:
        """Tell whether ``icd10`` is an active problem."""
        return any(d.icd10 == icd10 for d in self.active_diagnoses)


@dataclass(slots=True)
class _Body:
    """The stable traits behind a person's measures: height and corpulence scores."""

    height_z: float
    bmi_factor: float


class _ProfileDraw:
    """The draw of one patient's profile; holds what the steps share."""

    def __init__(self, rng: random.Random, person: Person, pool: Pool, as_of: date, rounds: int) -> None:
        self.rng = rng
        self.person = person
        self.pool = pool
        self.as_of = as_of
        self.rounds = rounds
        self.age = age_on(person.birth_date, as_of)
        self.start = max(person.birth_date, add_years(as_of, -HISTORY_YEARS))
        self.female = person.sex == "female"
        self.diagnoses: list[Diagnosis] = []
        self.treatments: list[Treatment] = []
        self.visits: list[Visit] = []
        self.banned_atc: set[str] = set()
        paediatric = self.age < 12 and rng.random() < 0.5
        self.gp = rng.choice(pool.of(Discipline.PAEDIATRICS if paediatric else Discipline.GENERAL_PRACTICE))
        self.pharmacist = rng.choice(pool.of(Discipline.PHARMACY))
        self.body = _Body(
            height_z=max(-2.5, min(2.5, rng.gauss(0, 1))),
            bmi_factor=math.exp(rng.gauss(0, 0.12)),
        )

    def draw(self) -> MedicalProfile:
        allergies = self._allergies()
        self.banned_atc = {atc for a in allergies for atc in _ALLERGY_DRUGS.get(a.allergen.snomed, ())}
        self._diseases()
        self._acute_episodes()
        stays = self._stays()
        self._follow_up_visits()
        self.visits.sort(key=lambda visit: visit.moment)
        return MedicalProfile(
            general_practitioner=self.gp,
            pharmacist=self.pharmacist,
            diagnoses=tuple(self.diagnoses),
            treatments=tuple(self.treatments),
            allergies=allergies,
            vaccinations=self._vaccinations(),
            visits=tuple(self.visits),
            labs=self._labs(),
            stays=stays,
        )

    # Who sees the patient.

    def _specialist(self, discipline: Discipline) -> Professional:
        if discipline is Discipline.GENERAL_PRACTICE or self.rng.random() < 0.5:
            return self.gp
        return self.rng.choice(self.pool.of(discipline))

    def _hospital_physician(self, discipline: Discipline) -> Professional:
        in_hospital = [
            p for p in self.pool.of(discipline) if p.organization.practice_setting == "ETABLISSEMENT"
        ]
        if not in_hospital:
            in_hospital = list(self.pool.of(Discipline.INTERNAL_MEDICINE, Discipline.EMERGENCY))
        return self.rng.choice(in_hospital)

    # Problems and treatments.

    def _allergies(self) -> tuple[Allergy, ...]:
        if self.rng.random() >= 0.15:
            return ()
        eligible = [a for a in ALLERGENS if self.age <= a.max_age]
        count = 2 if self.rng.random() < 0.2 else 1
        allergies = []
        for allergen in self.rng.sample(eligible, count):
            allergies.append(
                Allergy(
                    uuid=new_uuid(self.rng),
                    allergen=allergen,
                    reaction=self.rng.choice(allergen.reactions),
                    recorded=draw_day(self.rng, self.start, self.as_of),
                    recorder=self.gp,
                )
            )
        return tuple(allergies)

    def _diseases(self) -> None:
        for disease in DISEASES:
            if self.rng.random() >= disease.prevalence(self.age, self.female):
                continue
            first_age = min(first for first, _, _, _ in disease.bands)
            years_ill = self.rng.randint(0, max(0, min(25, self.age - first_age)))
            earliest = max(self.person.birth_date, add_years(self.as_of, -years_ill - 1))
            onset = draw_day(self.rng, earliest, self.as_of - timedelta(days=60))
            follower = self._specialist(disease.discipline)
            diagnosis = Diagnosis(
                uuid=new_uuid(self.rng),
                icd10=disease.icd10,
                display=disease.display,
                onset=onset,
                abated=None,
                recorder=follower,
            )
            self.diagnoses.append(diagnosis)
            if disease.icd10 == "E66.9":
                self.body.bmi_factor = max(self.body.bmi_factor, 31.5 / interpolate(BMI, self.age * 12))
            drugs = [d for d in disease.drugs if d.atc not in self.banned_atc]
            count = min(len(drugs), self.rng.choice((1, 1, 2)))
            for drug in self.rng.sample(drugs, count):
                self._treat(drug, diagnosis, onset + timedelta(days=self.rng.randint(0, 90)), None, follower)

    def _treat(
        self, drug: Drug, reason: Diagnosis | None, start: date, end: date | None, prescriber: Professional
    ) -> None:
        if drug.atc in self.banned_atc:
            return
        if end is None and any(t.is_active and t.drug.atc == drug.atc for t in self.treatments):
            return
        self.treatments.append(
            Treatment(
                uuid=new_uuid(self.rng),
                drug=drug,
                start=min(start, self.as_of),
                end=end,
                prescriber=prescriber,
                reason=reason,
            )
        )

    def _acute_episodes(self) -> None:
        eligible = [
            e
            for e in ACUTE_EPISODES
            if e.min_age <= self.age <= e.max_age and (self.female or not e.female_only)
        ]
        count = self.rng.choices(
            (0, 1, 2, 3), weights=(25, 40, 25, 10) if self.age >= 12 else (10, 30, 35, 25)
        )[0]
        for _ in range(count):
            episode = self.rng.choice(eligible)
            day = draw_day(self.rng, self.start, self.as_of - timedelta(days=1))
            abated = day + timedelta(days=self.rng.randint(5, 14))
            diagnosis = Diagnosis(
                uuid=new_uuid(self.rng),
                icd10=episode.icd10,
                display=episode.display,
                onset=day - timedelta(days=self.rng.randint(1, 4)),
                abated=abated if abated <= self.as_of else None,
                recorder=self.gp,
                encounter_diagnosis=True,
            )
            self.diagnoses.append(diagnosis)
            for drug in episode.drugs:
                self._treat(_for_age(drug, self.age), diagnosis, day, day + timedelta(days=7), self.gp)
            self._visit(day, self.gp, diagnosis)

    def _stays(self) -> tuple[Stay, ...]:
        eligible = [
            e
            for e in HOSPITAL_STAYS
            if e.min_age <= self.age <= e.max_age and (self.female or not e.female_only)
        ]
        stays = []
        for _ in range(self.rounds):
            episode = self.rng.choice(eligible)
            admitted = draw_day(self.rng, self.start, self.as_of - timedelta(days=2))
            discharged = min(self.as_of, admitted + timedelta(days=self.rng.randint(1, 9)))
            physician = self._hospital_physician(episode.discipline)
            diagnosis = Diagnosis(
                uuid=new_uuid(self.rng),
                icd10=episode.icd10,
                display=episode.display,
                onset=admitted,
                abated=None if episode.lasting else discharged,
                recorder=physician,
                encounter_diagnosis=True,
            )
            self.diagnoses.append(diagnosis)
            before = len(self.treatments)
            for drug in episode.drugs:
                end = None if episode.lasting else discharged + timedelta(days=10)
                self._treat(_for_age(drug, self.age), diagnosis, discharged, end, physician)
            stays.append(
                Stay(
                    episode=episode,
                    diagnosis=diagnosis,
                    admitted=admitted,
                    discharged=discharged,
                    physician=physician,
                    treatments=tuple(self.treatments[before:]),
                )
            )
        return tuple(stays)

    # Visits and measures.

    def _follow_up_visits(self) -> None:
        if self.age < 2:
            months = (1, 2, 3, 4, 5, 6, 9, 11, 12, 16, 18, 24)
            days = [add_months(self.person.birth_date, m) for m in months]
            days = [d for d in days if self.start <= d < self.as_of]
            if self.age == 0 and self.person.birth_date < self.as_of - timedelta(days=3):
                self._treat(VITAMIN_D_INFANT, None, self.person.birth_date + timedelta(days=3), None, self.gp)
        elif self.age < 18:
            days = [draw_day(self.rng, self.start, self.as_of - timedelta(days=1)) for _ in range(3)]
        else:
            chronic = sum(1 for d in self.diagnoses if d.abated is None)
            count = min(6, 1 + chronic + self.rng.randint(0, 2))
            days = [draw_day(self.rng, self.start, self.as_of - timedelta(days=1)) for _ in range(count)]
        while len(days) + len(self.visits) < self.rounds:
            days.append(draw_day(self.rng, self.start, self.as_of - timedelta(days=1)))
        active = [d for d in self.diagnoses if d.abated is None and not d.encounter_diagnosis]
        for day in days:
            reason = self.rng.choice(active) if active and self.rng.random() < 0.7 else None
            seen_by = self.gp
            if reason is not None:
                discipline = next(x.discipline for x in DISEASES if x.icd10 == reason.icd10)
                seen_by = reason.recorder if self.rng.random() < 0.5 else self._specialist(discipline)
            self._visit(day, seen_by, reason)

    def _visit(self, day: date, professional: Professional, reason: Diagnosis | None) -> None:
        months = max(0, (day - self.person.birth_date).days * 12 // 365)
        years = months // 12
        height = self._height(months)
        bmi = interpolate(BMI, months) * self.body.bmi_factor
        weight = round(bmi * (height / 100) ** 2 * (1 + self.rng.gauss(0, 0.01)), 1)
        measure_height = years < 18 or not any(v.height_cm for v in self.visits)
        pressure = self._blood_pressure(years) if years >= 3 and self.rng.random() < 0.9 else None
        self.visits.append(
            Visit(
                moment=draw_office_time(self.rng, day),
                professional=professional,
                reason=reason,
                weight_kg=weight,
                height_cm=round(height + self.rng.gauss(0, 0.3), 1) if measure_height else None,
                blood_pressure=pressure,
                weight_uuid=new_uuid(self.rng),
                height_uuid=new_uuid(self.rng),
                pressure_uuid=new_uuid(self.rng),
            )
        )

    def _height(self, months: int) -> float:
        column = 1 if self.person.sex == "male" else 2
        table = tuple((row[0], row[column]) for row in HEIGHT_CM)
        if months < 216:
            return interpolate(table, months) * (1 + 0.04 * self.body.height_z)
        shrink = max(0, months // 12 - 60) * 0.15
        return table[-1][1] + 7 * self.body.height_z - shrink

    def _blood_pressure(self, years: int) -> tuple[int, int]:
        if years < 18:
            systolic = 95 + years + self.rng.gauss(0, 6)
            diastolic = 58 + 0.5 * years + self.rng.gauss(0, 5)
        else:
            hypertensive = any(d.icd10 == "I10" for d in self.diagnoses)
            systolic = (
                112
                + 0.45 * (years - 20)
                + (self.rng.gauss(12, 6) if hypertensive else 0)
                + self.rng.gauss(0, 8)
            )
            diastolic = 70 + 0.2 * min(years - 20, 40) + (5 if hypertensive else 0) + self.rng.gauss(0, 6)
        systolic = max(85, min(200, systolic))
        diastolic = max(45, min(115, diastolic, systolic - 25))
        return round(systolic), round(diastolic)

    def _labs(self) -> tuple[LabResult, ...]:
        diabetic = any(d.icd10 == "E11.9" and d.abated is None for d in self.diagnoses)
        if diabetic:
            days = [add_months(self.start, 3 * quarter) for quarter in range(HISTORY_YEARS * 4)]
        elif self.age >= 40:
            days = [
                add_months(self.start, 12 * year + 6)
                for year in range(HISTORY_YEARS)
                if self.rng.random() < 0.6
            ]
        elif self.age >= 18 and self.rng.random() < 0.3:
            days = [draw_day(self.rng, self.start, self.as_of)]
        else:
            days = []
        results = []
        for day in days:
            day = min(self.as_of, day + timedelta(days=self.rng.randint(-10, 10)))
            if day < self.start:
                continue
            minutes = self.rng.randrange(7 * 60 + 30, 10 * 60, 5)
            moment = paris_time(day, time(minutes // 60, minutes % 60))
            biologist = self.rng.choice(self.pool.of(Discipline.BIOLOGY))
            if diabetic:
                glucose = max(5.5, min(16.0, self.rng.gauss(8.0, 1.5)))
                hba1c = max(5.8, min(11.0, self.rng.gauss(7.2, 0.8)))
                results.append(
                    LabResult(
                        uuid=new_uuid(self.rng),
                        loinc="4548-4",
                        moment=moment,
                        value=round(hba1c, 1),
                        biologist=biologist,
                    )
                )
            else:
                glucose = max(3.9, min(6.9, self.rng.gauss(5.2, 0.45)))
            results.append(
                LabResult(
                    uuid=new_uuid(self.rng),
                    loinc="15074-8",
                    moment=moment,
                    value=round(glucose, 2),
                    biologist=biologist,
                )
            )
        return tuple(results)

    # Vaccinations.

    def _vaccinations(self) -> tuple[Vaccination, ...]:
        birth = self.person.birth_date
        oldest = add_years(self.as_of, -VACCINATION_HISTORY_YEARS)
        vaccinations = []
        for dose in SCHEDULE:
            if birth.year < dose.since_year or (dose.sex is not None and dose.sex != self.person.sex):
                continue
            jitter = 20 if dose.age_months < 24 else 180 if dose.age_months < 216 else 365
            day = add_months(birth, dose.age_months) + timedelta(days=self.rng.randint(0, jitter))
            coverage = 0.95 if dose.age_months < 24 else 0.85 if dose.age_months < 216 else 0.6
            if day > self.as_of or day < oldest or self.rng.random() >= coverage:
                continue
            vaccinations.append(self._vaccination(dose, day))
        at_risk = self.age >= 65 or any(d.icd10 in _FLU_RISK and d.abated is None for d in self.diagnoses)
        if at_risk and self.age >= 1:
            for season in range(self.as_of.year - 4, self.as_of.year):
                if self.rng.random() < 0.55:
                    day = date(season, 10, 15) + timedelta(days=self.rng.randint(0, 70))
                    vaccinations.append(self._vaccination(_seasonal(INFLUENZA, season), day))
                if self.age >= 65 and season >= 2021 and self.rng.random() < 0.3:
                    day = date(season, 10, 2) + timedelta(days=self.rng.randint(0, 80))
                    vaccinations.append(self._vaccination(_seasonal(COVID19, season), day))
        vaccinations.sort(key=lambda v: v.day)
        return tuple(v for v in vaccinations if v.day <= self.as_of)

    def _vaccination(self, dose: Dose, day: date) -> Vaccination:
        if dose.age_months < 72 and dose.age_months != 0:
            performer = self.gp
        elif dose.atc in (INFLUENZA[0], COVID19[0]):
            discipline = self.rng.choices(
                (Discipline.PHARMACY, Discipline.NURSING, Discipline.GENERAL_PRACTICE), weights=(35, 20, 45)
            )[0]
            performer = (
                self.gp
                if discipline is Discipline.GENERAL_PRACTICE
                else self.rng.choice(self.pool.of(discipline))
            )
        else:
            performer = self.gp
        letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
        lot = (
            "".join(self.rng.choices(letters, k=2)) + f"{self.rng.randint(100, 999)}{self.rng.choice('ABC')}"
        )
        return Vaccination(uuid=new_uuid(self.rng), dose=dose, day=day, lot=lot, performer=performer)


def _for_age(drug: Drug, age: int) -> Drug:
    """Give a child the paediatric form of an adult drug."""
    if age >= 12:
        return drug
    return {PARACETAMOL.atc: PARACETAMOL_CHILD, AMOXICILLIN.atc: AMOXICILLIN_CHILD}.get(drug.atc, drug)


def _seasonal(vaccine: tuple[str, str, str], season: int) -> Dose:
    atc, product, diseases = vaccine
    return Dose(atc, product, f"{diseases} (saison {season}-{season + 1})", 0, 1)


def draw_profile(
    rng: random.Random, person: Person, pool: Pool, as_of: date, *, rounds: int = 1
) -> MedicalProfile:
    """Draw the medical profile of ``person`` as known on ``as_of``.

    ``rounds`` is how many documents of each kind the patient will get; the profile holds at
    least that many visits and hospital stays to write them from.
    """
    return _ProfileDraw(rng, person, pool, as_of, rounds).draw()
