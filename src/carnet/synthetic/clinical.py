"""Clinical knowledge the generator draws from: diseases, drugs, allergies, vaccines, growth.

Prevalences are rough French orders of magnitude by age and sex (hypertension in a third of
adults over 55, type 2 diabetes in about one in six people over 65…), enough for plausible
records, not for epidemiology. Diagnoses are CIM-10 (ICD-10) codes with their French labels,
drugs ATC codes with a French generic label and a posology, allergens SNOMED CT codes, and
vaccines follow the French schedule (calendrier des vaccinations) and when each vaccine entered it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from carnet.synthetic.professionals import Discipline


@dataclass(frozen=True, slots=True)
class Drug:
    """A medicine: ATC code, French generic name and presentation, usual posology."""

    atc: str
    label: str
    dosage: str


@dataclass(frozen=True, slots=True)
class Disease:
    """A chronic disease, who has it, who follows it, and how it is treated."""

    icd10: str
    display: str
    bands: tuple[tuple[int, int, float, float], ...]
    """(first age, last age, share of men, share of women) having it."""
    discipline: Discipline
    drugs: tuple[Drug, ...]

    def prevalence(self, age: int, female: bool) -> float:
        """Return the share of people of ``age`` and sex who have the disease."""
        for first, last, men, women in self.bands:
            if first <= age <= last:
                return women if female else men
        return 0.0


@dataclass(frozen=True, slots=True)
class Episode:
    """An acute illness seen in a practice or a hospital, with its treatment."""

    icd10: str
    display: str
    min_age: int
    max_age: int
    drugs: tuple[Drug, ...]
    discipline: Discipline = Discipline.GENERAL_PRACTICE
    female_only: bool = False
    summary: str = ""
    lasting: bool = False
    """Whether the illness stays on the problem list and its drugs go on after the stay."""


@dataclass(frozen=True, slots=True)
class Allergen:
    """An allergen or intolerance trigger (SNOMED CT substance) and its usual reaction."""

    snomed: str
    display: str
    category: str
    reactions: tuple[tuple[str, str], ...]
    max_age: int = 120


@dataclass(frozen=True, slots=True)
class Dose:
    """One dose of the French vaccination schedule."""

    atc: str
    product: str
    diseases: str
    age_months: int
    number: int
    since_year: int = 1900
    """First birth year the dose applies to (when the vaccine entered the schedule)."""
    sex: str | None = None
    route: str = "IM"


RAMIPRIL = Drug("C09AA05", "RAMIPRIL 5 mg, comprimé", "1 comprimé le matin")
AMLODIPINE = Drug("C08CA01", "AMLODIPINE 5 mg, gélule", "1 gélule le matin")
INDAPAMIDE = Drug("C03BA11", "INDAPAMIDE 1,5 mg, comprimé à libération prolongée", "1 comprimé le matin")
LOSARTAN = Drug("C09CA01", "LOSARTAN 50 mg, comprimé pelliculé", "1 comprimé par jour")
BISOPROLOL = Drug("C07AB07", "BISOPROLOL 2,5 mg, comprimé", "1 comprimé le matin")
METFORMIN = Drug(
    "A10BA02", "METFORMINE 1000 mg, comprimé pelliculé", "1 comprimé matin et soir au cours des repas"
)
SITAGLIPTIN = Drug("A10BH01", "SITAGLIPTINE 100 mg, comprimé pelliculé", "1 comprimé par jour")
DAPAGLIFLOZIN = Drug("A10BK01", "DAPAGLIFLOZINE 10 mg, comprimé pelliculé", "1 comprimé le matin")
GLICLAZIDE = Drug(
    "A10BB09", "GLICLAZIDE 60 mg, comprimé sécable à libération modifiée", "1 comprimé au petit-déjeuner"
)
ATORVASTATIN = Drug("C10AA05", "ATORVASTATINE 20 mg, comprimé pelliculé", "1 comprimé le soir")
ROSUVASTATIN = Drug("C10AA07", "ROSUVASTATINE 10 mg, comprimé pelliculé", "1 comprimé le soir")
SALBUTAMOL = Drug(
    "R03AC02",
    "SALBUTAMOL 100 microgrammes/dose, suspension pour inhalation",
    "2 bouffées si gêne respiratoire",
)
BUDESONIDE_FORMOTEROL = Drug(
    "R03AK07",
    "BUDÉSONIDE/FORMOTÉROL 200/6 microgrammes/dose, poudre pour inhalation",
    "1 inhalation matin et soir",
)
CETIRIZINE = Drug(
    "R06AE07", "CÉTIRIZINE 10 mg, comprimé pelliculé sécable", "1 comprimé par jour pendant les pollens"
)
DESLORATADINE = Drug("R06AX27", "DESLORATADINE 5 mg, comprimé pelliculé", "1 comprimé par jour")
BETAMETHASONE = Drug(
    "D07AC01", "BÉTAMÉTHASONE 0,05 %, crème", "1 application par jour sur les plaques pendant 7 jours"
)
SERTRALINE = Drug("N06AB06", "SERTRALINE 50 mg, gélule", "1 gélule le matin")
ESCITALOPRAM = Drug("N06AB10", "ESCITALOPRAM 10 mg, comprimé pelliculé sécable", "1 comprimé par jour")
HYDROXYZINE = Drug("N05BB01", "HYDROXYZINE 25 mg, comprimé pelliculé sécable", "1 comprimé le soir si besoin")
LEVOTHYROXINE = Drug(
    "H03AA01", "LÉVOTHYROXINE SODIQUE 75 microgrammes, comprimé sécable", "1 comprimé le matin à jeun"
)
ESOMEPRAZOLE = Drug(
    "A02BC05", "ÉSOMÉPRAZOLE 20 mg, gélule gastro-résistante", "1 gélule le matin avant le repas"
)
OMEPRAZOLE = Drug("A02BC01", "OMÉPRAZOLE 20 mg, gélule gastro-résistante", "1 gélule par jour")
PARACETAMOL = Drug("N02BE01", "PARACÉTAMOL 1 g, comprimé", "1 comprimé jusqu'à 3 fois par jour si douleur")
IBUPROFEN = Drug(
    "M01AE01", "IBUPROFÈNE 400 mg, comprimé pelliculé", "1 comprimé 3 fois par jour pendant 5 jours"
)
SUMATRIPTAN = Drug("N02CC01", "SUMATRIPTAN 50 mg, comprimé pelliculé", "1 comprimé dès le début de la crise")
APIXABAN = Drug("B01AF02", "APIXABAN 5 mg, comprimé pelliculé", "1 comprimé matin et soir")
ASPIRIN = Drug(
    "B01AC06",
    "ACIDE ACÉTYLSALICYLIQUE 75 mg, poudre pour solution buvable en sachet-dose",
    "1 sachet par jour",
)
TIOTROPIUM = Drug(
    "R03BB04", "TIOTROPIUM 2,5 microgrammes/dose, solution pour inhalation", "2 bouffées une fois par jour"
)
ALENDRONATE = Drug("M05BA04", "ACIDE ALENDRONIQUE 70 mg, comprimé", "1 comprimé par semaine, à jeun")
COLECALCIFEROL = Drug(
    "A11CC05", "COLÉCALCIFÉROL 50 000 UI, solution buvable en ampoule", "1 ampoule par mois"
)
LETROZOLE = Drug("L02BG04", "LÉTROZOLE 2,5 mg, comprimé pelliculé", "1 comprimé par jour")
TAMOXIFEN = Drug("L02BA01", "TAMOXIFÈNE 20 mg, comprimé pelliculé", "1 comprimé par jour")
LATANOPROST = Drug(
    "S01EE01", "LATANOPROST 50 microgrammes/ml, collyre en solution", "1 goutte le soir dans chaque oeil"
)
TAMSULOSIN = Drug("G04CA02", "TAMSULOSINE 0,4 mg, gélule à libération prolongée", "1 gélule le soir")
MEMANTINE = Drug("N06DX01", "MÉMANTINE 10 mg, comprimé pelliculé", "1 comprimé par jour")
AMOXICILLIN = Drug(
    "J01CA04", "AMOXICILLINE 1 g, comprimé dispersible", "1 comprimé matin et soir pendant 6 jours"
)
AMOXICILLIN_CHILD = Drug(
    "J01CA04",
    "AMOXICILLINE 250 mg/5 ml, poudre pour suspension buvable",
    "1 dose-poids matin, midi et soir pendant 8 jours",
)
PARACETAMOL_CHILD = Drug(
    "N02BE01", "PARACÉTAMOL 2,4 %, suspension buvable", "1 dose-poids toutes les 6 heures si fièvre"
)
FOSFOMYCIN = Drug(
    "J01XX01",
    "FOSFOMYCINE TROMÉTAMOL 3 g, granulés pour solution buvable en sachet",
    "1 sachet en prise unique",
)
VITAMIN_D_INFANT = Drug(
    "A11CC05", "COLÉCALCIFÉROL 10 000 UI/ml, solution buvable en gouttes", "2 gouttes par jour"
)
FUROSEMIDE = Drug("C03CA01", "FUROSÉMIDE 40 mg, comprimé sécable", "1 comprimé le matin")
ENOXAPARIN = Drug(
    "B01AB05",
    "ÉNOXAPARINE 4000 UI/0,4 ml, solution injectable",
    "1 injection sous-cutanée par jour pendant 35 jours",
)

DISEASES: tuple[Disease, ...] = (
    Disease(
        "I10",
        "Hypertension essentielle (primitive)",
        (
            (18, 39, 0.03, 0.02),
            (40, 54, 0.15, 0.12),
            (55, 64, 0.3, 0.25),
            (65, 74, 0.45, 0.4),
            (75, 120, 0.6, 0.6),
        ),
        Discipline.CARDIOLOGY,
        (RAMIPRIL, AMLODIPINE, INDAPAMIDE, LOSARTAN),
    ),
    Disease(
        "E11.9",
        "Diabète sucré de type 2, sans complication",
        ((30, 44, 0.02, 0.015), (45, 64, 0.07, 0.05), (65, 74, 0.15, 0.1), (75, 120, 0.17, 0.13)),
        Discipline.ENDOCRINOLOGY,
        (METFORMIN, SITAGLIPTIN, DAPAGLIFLOZIN, GLICLAZIDE),
    ),
    Disease(
        "E78.0",
        "Hypercholestérolémie essentielle",
        ((35, 64, 0.12, 0.1), (65, 120, 0.2, 0.18)),
        Discipline.GENERAL_PRACTICE,
        (ATORVASTATIN, ROSUVASTATIN),
    ),
    Disease(
        "J45.9",
        "Asthme, sans précision",
        ((3, 17, 0.09, 0.07), (18, 120, 0.06, 0.07)),
        Discipline.PNEUMOLOGY,
        (SALBUTAMOL, BUDESONIDE_FORMOTEROL),
    ),
    Disease(
        "J30.1",
        "Rhinite allergique due au pollen",
        ((6, 50, 0.12, 0.12),),
        Discipline.GENERAL_PRACTICE,
        (CETIRIZINE, DESLORATADINE),
    ),
    Disease(
        "L20.9",
        "Dermite atopique, sans précision",
        ((0, 12, 0.12, 0.12), (13, 40, 0.04, 0.04)),
        Discipline.DERMATOLOGY,
        (BETAMETHASONE,),
    ),
    Disease(
        "F32.9",
        "Épisode dépressif, sans précision",
        ((18, 64, 0.05, 0.09), (65, 120, 0.05, 0.07)),
        Discipline.PSYCHIATRY,
        (SERTRALINE, ESCITALOPRAM),
    ),
    Disease(
        "F41.1",
        "Anxiété généralisée",
        ((18, 120, 0.03, 0.05),),
        Discipline.PSYCHIATRY,
        (ESCITALOPRAM, HYDROXYZINE),
    ),
    Disease(
        "E03.9",
        "Hypothyroïdie, sans précision",
        ((20, 49, 0.01, 0.05), (50, 120, 0.02, 0.1)),
        Discipline.ENDOCRINOLOGY,
        (LEVOTHYROXINE,),
    ),
    Disease(
        "K21.9",
        "Reflux gastro-oesophagien sans oesophagite",
        ((25, 120, 0.06, 0.06),),
        Discipline.GENERAL_PRACTICE,
        (ESOMEPRAZOLE, OMEPRAZOLE),
    ),
    Disease(
        "G43.9",
        "Migraine, sans précision",
        ((15, 55, 0.04, 0.12),),
        Discipline.NEUROLOGY,
        (SUMATRIPTAN,),
    ),
    Disease(
        "I48.9",
        "Fibrillation et flutter auriculaires, sans précision",
        ((65, 74, 0.05, 0.03), (75, 120, 0.12, 0.1)),
        Discipline.CARDIOLOGY,
        (APIXABAN, BISOPROLOL),
    ),
    Disease(
        "I25.9",
        "Cardiopathie ischémique chronique, sans précision",
        ((55, 74, 0.05, 0.02), (75, 120, 0.1, 0.05)),
        Discipline.CARDIOLOGY,
        (ASPIRIN, BISOPROLOL, ATORVASTATIN),
    ),
    Disease(
        "J44.9",
        "Maladie pulmonaire obstructive chronique, sans précision",
        ((45, 64, 0.05, 0.03), (65, 120, 0.09, 0.05)),
        Discipline.PNEUMOLOGY,
        (TIOTROPIUM, SALBUTAMOL),
    ),
    Disease(
        "M81.9",
        "Ostéoporose, sans précision",
        ((55, 69, 0.01, 0.08), (70, 120, 0.04, 0.2)),
        Discipline.GENERAL_PRACTICE,
        (ALENDRONATE, COLECALCIFEROL),
    ),
    Disease(
        "M17.9",
        "Gonarthrose, sans précision",
        ((55, 120, 0.1, 0.15),),
        Discipline.GENERAL_PRACTICE,
        (PARACETAMOL,),
    ),
    Disease(
        "E66.9",
        "Obésité, sans précision",
        ((18, 120, 0.14, 0.15),),
        Discipline.ENDOCRINOLOGY,
        (),
    ),
    Disease(
        "N18.3",
        "Maladie rénale chronique, stade 3",
        ((70, 120, 0.08, 0.08),),
        Discipline.INTERNAL_MEDICINE,
        (),
    ),
    Disease(
        "G30.9",
        "Maladie d'Alzheimer, sans précision",
        ((75, 84, 0.05, 0.06), (85, 120, 0.14, 0.18)),
        Discipline.NEUROLOGY,
        (MEMANTINE,),
    ),
    Disease(
        "C50.9",
        "Tumeur maligne du sein, sans précision",
        ((45, 64, 0.0, 0.015), (65, 120, 0.0, 0.025)),
        Discipline.GYNAECOLOGY,
        (LETROZOLE, TAMOXIFEN),
    ),
    Disease(
        "H40.1",
        "Glaucome primitif à angle ouvert",
        ((60, 120, 0.03, 0.03),),
        Discipline.GENERAL_PRACTICE,
        (LATANOPROST,),
    ),
    Disease(
        "N40",
        "Hyperplasie de la prostate",
        ((55, 120, 0.15, 0.0),),
        Discipline.GENERAL_PRACTICE,
        (TAMSULOSIN,),
    ),
)

#: Acute illnesses seen by the treating physician.
ACUTE_EPISODES: tuple[Episode, ...] = (
    Episode("J00", "Rhinopharyngite (aiguë) [rhume banal]", 0, 120, (PARACETAMOL,)),
    Episode("H66.9", "Otite moyenne, sans précision", 0, 12, (AMOXICILLIN_CHILD, PARACETAMOL_CHILD)),
    Episode("J02.9", "Pharyngite aiguë, sans précision", 3, 120, (AMOXICILLIN, PARACETAMOL)),
    Episode("J20.9", "Bronchite aiguë, sans précision", 2, 120, (PARACETAMOL,)),
    Episode("N30.0", "Cystite aiguë", 15, 120, (FOSFOMYCIN,), female_only=True),
    Episode(
        "J11.1",
        "Grippe avec d'autres manifestations respiratoires, virus non identifié",
        2,
        120,
        (PARACETAMOL,),
    ),
    Episode("M54.5", "Lombalgie basse", 18, 120, (IBUPROFEN, PARACETAMOL)),
    Episode("A09.9", "Gastro-entérite et colite d'origine non précisée", 0, 120, (PARACETAMOL,)),
)

#: Reasons for a hospital stay, which end with a discharge letter (lettre de liaison).
HOSPITAL_STAYS: tuple[Episode, ...] = (
    Episode(
        "J21.9",
        "Bronchiolite aiguë, sans précision",
        0,
        1,
        (PARACETAMOL_CHILD,),
        Discipline.PAEDIATRICS,
        summary=(
            "Hospitalisation pour bronchiolite avec difficultés alimentaires. Désobstruction "
            "rhinopharyngée, surveillance de la saturation, évolution favorable sans "
            "oxygénothérapie prolongée."
        ),
    ),
    Episode(
        "A08.4",
        "Infection intestinale virale, sans précision",
        0,
        5,
        (PARACETAMOL_CHILD,),
        Discipline.PAEDIATRICS,
        summary=(
            "Déshydratation modérée sur gastro-entérite virale. Réhydratation par soluté de "
            "réhydratation orale, reprise alimentaire progressive, poids de sortie stable."
        ),
    ),
    Episode(
        "S52.5",
        "Fracture de l'extrémité inférieure du radius",
        6,
        120,
        (PARACETAMOL,),
        Discipline.EMERGENCY,
        summary=(
            "Chute de sa hauteur avec fracture de l'extrémité inférieure du radius. Réduction "
            "orthopédique et immobilisation par plâtre antébrachio-palmaire pour six semaines."
        ),
    ),
    Episode(
        "K35.8",
        "Appendicite aiguë, autres et sans précision",
        6,
        60,
        (PARACETAMOL,),
        Discipline.EMERGENCY,
        summary=(
            "Douleurs de la fosse iliaque droite, syndrome inflammatoire biologique, appendicite "
            "confirmée en imagerie. Appendicectomie par coelioscopie, suites simples."
        ),
    ),
    Episode(
        "J18.9",
        "Pneumopathie, sans précision",
        18,
        120,
        (AMOXICILLIN, PARACETAMOL),
        Discipline.INTERNAL_MEDICINE,
        summary=(
            "Pneumopathie franche lobaire aiguë. Antibiothérapie par amoxicilline, apyrexie à 48 "
            "heures, radiographie de contrôle à prévoir à six semaines."
        ),
    ),
    Episode(
        "N10",
        "Néphrite tubulo-interstitielle aiguë",
        18,
        120,
        (PARACETAMOL,),
        Discipline.INTERNAL_MEDICINE,
        female_only=True,
        summary=(
            "Pyélonéphrite aiguë non compliquée. Antibiothérapie adaptée à l'antibiogramme, "
            "échographie rénale sans obstacle, relais per os avant la sortie."
        ),
    ),
    Episode(
        "O80",
        "Accouchement unique et spontané",
        18,
        45,
        (PARACETAMOL,),
        Discipline.GYNAECOLOGY,
        female_only=True,
        summary=(
            "Accouchement par voie basse à terme d'un enfant unique, sans complication. "
            "Allaitement mis en place, sortie avec rééducation périnéale à prévoir."
        ),
    ),
    Episode(
        "I50.9",
        "Insuffisance cardiaque, sans précision",
        65,
        120,
        (FUROSEMIDE, BISOPROLOL),
        Discipline.CARDIOLOGY,
        lasting=True,
        summary=(
            "Décompensation cardiaque globale. Traitement diurétique intraveineux puis relais per "
            "os, perte de 4 kg, éducation thérapeutique sur la surveillance du poids."
        ),
    ),
    Episode(
        "S72.0",
        "Fracture du col du fémur",
        70,
        120,
        (PARACETAMOL, ENOXAPARIN),
        Discipline.GERIATRICS,
        summary=(
            "Chute à domicile avec fracture du col fémoral. Ostéosynthèse, reprise de la marche "
            "avec déambulateur, orientation en soins de suite et de réadaptation discutée."
        ),
    ),
    Episode(
        "N39.0",
        "Infection des voies urinaires, siège non précisé",
        65,
        120,
        (PARACETAMOL,),
        Discipline.GERIATRICS,
        summary=(
            "Infection urinaire fébrile avec confusion. Antibiothérapie adaptée, hydratation, "
            "récupération de l'état cognitif antérieur."
        ),
    ),
    Episode(
        "I63.9",
        "Infarctus cérébral, sans précision",
        60,
        120,
        (ASPIRIN, ATORVASTATIN),
        Discipline.NEUROLOGY,
        lasting=True,
        summary=(
            "Accident vasculaire cérébral ischémique mineur. Bilan étiologique, antiagrégant "
            "plaquettaire et statine, rééducation orthophonique à poursuivre."
        ),
    ),
)

ALLERGENS: tuple[Allergen, ...] = (
    Allergen(
        "764146007",
        "Pénicillines",
        "medication",
        (("271807003", "Éruption cutanée"), ("247472004", "Urticaire")),
    ),
    Allergen("372687004", "Amoxicilline", "medication", (("271807003", "Éruption cutanée"),)),
    Allergen("387458008", "Acide acétylsalicylique", "medication", (("41291007", "Angio-oedème"),)),
    Allergen("387207008", "Ibuprofène", "medication", (("247472004", "Urticaire"),)),
    Allergen("256349002", "Arachide", "food", (("39579001", "Anaphylaxie"), ("41291007", "Angio-oedème"))),
    Allergen("102263004", "Oeuf", "food", (("247472004", "Urticaire"),), max_age=15),
    Allergen("3718001", "Lait de vache", "food", (("62315008", "Diarrhée"),), max_age=6),
    Allergen("111088007", "Latex", "environment", (("418290006", "Prurit"),)),
    Allergen("256259004", "Pollens", "environment", (("70076002", "Rhinite"), ("9826008", "Conjonctivite"))),
    Allergen("260147004", "Acariens", "environment", (("70076002", "Rhinite"), ("267036007", "Dyspnée"))),
    Allergen("288328004", "Venin d'abeille", "environment", (("39579001", "Anaphylaxie"),)),
)

_HEXAVALENT = (
    "J07CA09",
    "INFANRIX HEXA",
    "Diphtérie, tétanos, coqueluche, poliomyélite, Haemophilus influenzae b, hépatite B",
)
_PNEUMO = ("J07AL02", "PREVENAR 13", "Infections à pneumocoque")
_ROTA = ("J07BH01", "ROTARIX", "Gastro-entérite à rotavirus")
_MEN_B = ("J07AH09", "BEXSERO", "Infections invasives à méningocoque B")
_MEN_C = ("J07AH07", "NEISVAC", "Infections invasives à méningocoque C")
_MMR = ("J07BD52", "PRIORIX", "Rougeole, oreillons, rubéole")
_DTAP_IPV = ("J07CA02", "TETRAVAC-ACELLULAIRE", "Diphtérie, tétanos, coqueluche, poliomyélite")
_TDAP_IPV = ("J07CA02", "REPEVAX", "Diphtérie, tétanos, coqueluche, poliomyélite")
_HPV = ("J07BM03", "GARDASIL 9", "Infections à papillomavirus humains")
_TD_IPV = ("J07CA01", "REVAXIS", "Diphtérie, tétanos, poliomyélite")
INFLUENZA = ("J07BB02", "VAXIGRIP TETRA", "Grippe saisonnière")
COVID19 = ("J07BN01", "COMIRNATY", "Covid-19")


def _dose(
    vaccine: tuple[str, str, str],
    age_months: int,
    number: int,
    *,
    since_year: int = 1900,
    sex: str | None = None,
    route: str = "IM",
) -> Dose:
    atc, product, diseases = vaccine
    return Dose(atc, product, diseases, age_months, number, since_year, sex, route)


#: The French schedule by age, with the birth year from which each dose applies.
SCHEDULE: tuple[Dose, ...] = (
    _dose(_HEXAVALENT, 2, 1, since_year=2000),
    _dose(_PNEUMO, 2, 1, since_year=2003),
    _dose(_ROTA, 2, 1, since_year=2022, route="PO"),
    _dose(_MEN_B, 3, 1, since_year=2022),
    _dose(_ROTA, 3, 2, since_year=2022, route="PO"),
    _dose(_HEXAVALENT, 4, 2, since_year=2000),
    _dose(_PNEUMO, 4, 2, since_year=2003),
    _dose(_MEN_B, 5, 2, since_year=2022),
    _dose(_MEN_C, 5, 1, since_year=2017),
    _dose(_HEXAVALENT, 11, 3, since_year=2000),
    _dose(_PNEUMO, 11, 3, since_year=2003),
    _dose(_MMR, 12, 1, since_year=1985),
    _dose(_MEN_C, 12, 2, since_year=2010),
    _dose(_MEN_B, 12, 3, since_year=2022),
    _dose(_MMR, 16, 2, since_year=1985),
    _dose(_DTAP_IPV, 72, 4, since_year=1990),
    _dose(_TDAP_IPV, 132, 5, since_year=1990),
    _dose(_HPV, 132, 1, since_year=1993, sex="female"),
    _dose(_HPV, 138, 2, since_year=1993, sex="female"),
    _dose(_HPV, 132, 1, since_year=2010, sex="male"),
    _dose(_HPV, 138, 2, since_year=2010, sex="male"),
    _dose(_TDAP_IPV, 25 * 12, 6),
    _dose(_TD_IPV, 45 * 12, 7),
    _dose(_TD_IPV, 65 * 12, 8),
    _dose(_TD_IPV, 75 * 12, 9),
    _dose(_TD_IPV, 85 * 12, 10),
)

#: Median height in cm by age in months (boys, girls), after the WHO and French growth charts.
HEIGHT_CM: tuple[tuple[int, float, float], ...] = (
    (0, 50.0, 49.2),
    (1, 54.7, 53.7),
    (2, 58.4, 57.1),
    (4, 63.9, 62.1),
    (6, 67.6, 65.7),
    (9, 72.0, 70.1),
    (12, 75.7, 74.0),
    (18, 82.3, 80.7),
    (24, 87.1, 85.7),
    (36, 96.0, 95.0),
    (48, 103.0, 102.0),
    (60, 110.0, 109.0),
    (72, 116.0, 115.0),
    (96, 128.0, 127.0),
    (120, 138.0, 138.0),
    (144, 149.0, 151.0),
    (156, 156.0, 156.0),
    (168, 163.0, 159.0),
    (180, 169.0, 161.0),
    (204, 175.0, 163.0),
    (216, 176.0, 163.0),
)

#: Median body-mass index by age in months (both sexes).
BMI: tuple[tuple[int, float], ...] = (
    (0, 13.4),
    (1, 14.9),
    (2, 16.3),
    (6, 17.2),
    (12, 17.0),
    (24, 16.0),
    (60, 15.3),
    (96, 15.8),
    (144, 17.8),
    (216, 21.5),
    (360, 24.0),
    (600, 25.8),
    (840, 26.5),
    (960, 25.8),
    (1080, 24.5),
)


def interpolate(table: tuple[tuple[int, float], ...], months: int) -> float:
    """Interpolate linearly a (months, value) table; clamp outside its range."""
    if months <= table[0][0]:
        return table[0][1]
    for (m0, v0), (m1, v1) in itertools.pairwise(table):
        if months <= m1:
            return v0 + (v1 - v0) * (months - m0) / (m1 - m0)
    return table[-1][1]
