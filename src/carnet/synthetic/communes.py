"""French communes (INSEE code, postcode, name), streets, and countries of birth abroad.

Communes are drawn with a weight close to their population in thousands, so Paris, Marseille and
Lyon come up often, and Corsica (``2A``/``2B``) and the overseas departments (``97x``) come up
too. Paris, Marseille and Lyon are listed by arrondissement because the NIR of a person born
there carries the arrondissement's code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Commune:
    """A commune: its INSEE code (``2A004``, ``97411``), one of its postcodes, and its name."""

    insee: str
    postcode: str
    name: str
    weight: int

    @property
    def department(self) -> str:
        """Return the department code: ``75``, ``2A``, ``971``."""
        return self.insee[:3] if self.insee.startswith("97") else self.insee[:2]


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A postal address in France."""

    line: str
    commune: Commune

    @property
    def text(self) -> str:
        """Return the address on one line, the way it is written on an envelope."""
        return f"{self.line}, {self.commune.postcode} {self.commune.name}"


def _communes(text: str) -> tuple[Commune, ...]:
    communes = []
    for row in text.strip().splitlines():
        insee, postcode, weight, name = row.strip().split(" ", 3)
        communes.append(Commune(insee=insee, postcode=postcode, name=name, weight=int(weight)))
    return tuple(communes)


#: INSEE code, postcode, weight (about the population in thousands), name.
COMMUNES: tuple[Commune, ...] = _communes(
    """
    75101 75001 16 Paris 1er Arrondissement
    75104 75004 28 Paris 4e Arrondissement
    75105 75005 58 Paris 5e Arrondissement
    75107 75007 50 Paris 7e Arrondissement
    75111 75011 142 Paris 11e Arrondissement
    75112 75012 140 Paris 12e Arrondissement
    75113 75013 178 Paris 13e Arrondissement
    75114 75014 136 Paris 14e Arrondissement
    75115 75015 227 Paris 15e Arrondissement
    75116 75016 162 Paris 16e Arrondissement
    75117 75017 164 Paris 17e Arrondissement
    75118 75018 190 Paris 18e Arrondissement
    75119 75019 183 Paris 19e Arrondissement
    75120 75020 190 Paris 20e Arrondissement
    13201 13001 40 Marseille 1er Arrondissement
    13204 13004 48 Marseille 4e Arrondissement
    13208 13008 80 Marseille 8e Arrondissement
    13209 13009 75 Marseille 9e Arrondissement
    13213 13013 90 Marseille 13e Arrondissement
    13215 13015 78 Marseille 15e Arrondissement
    69381 69001 30 Lyon 1er Arrondissement
    69383 69003 100 Lyon 3e Arrondissement
    69387 69007 84 Lyon 7e Arrondissement
    69388 69008 86 Lyon 8e Arrondissement
    31555 31000 500 Toulouse
    06088 06000 345 Nice
    44109 44000 325 Nantes
    34172 34000 300 Montpellier
    67482 67000 290 Strasbourg
    33063 33000 260 Bordeaux
    59350 59000 235 Lille
    35238 35000 225 Rennes
    51454 51100 180 Reims
    83137 83000 180 Toulon
    42218 42000 175 Saint-Étienne
    76351 76600 165 Le Havre
    38185 38000 160 Grenoble
    21231 21000 160 Dijon
    49007 49000 157 Angers
    30189 30000 150 Nîmes
    63113 63000 147 Clermont-Ferrand
    72181 72000 145 Le Mans
    13001 13100 145 Aix-en-Provence
    29019 29200 140 Brest
    37261 37000 137 Tours
    80021 80000 134 Amiens
    87085 87000 130 Limoges
    74010 74000 130 Annecy
    66136 66000 120 Perpignan
    57463 57000 120 Metz
    25056 25000 120 Besançon
    45234 45000 117 Orléans
    76540 76000 114 Rouen
    14118 14000 106 Caen
    54395 54000 104 Nancy
    68224 68100 105 Mulhouse
    86194 86000 90 Poitiers
    64445 64000 75 Pau
    17300 17000 78 La Rochelle
    92012 92100 120 Boulogne-Billancourt
    93066 93200 113 Saint-Denis
    93048 93100 110 Montreuil
    94028 94000 92 Créteil
    92050 92000 97 Nanterre
    78646 78000 85 Versailles
    95018 95100 110 Argenteuil
    84007 84000 90 Avignon
    34032 34500 80 Béziers
    06029 06400 74 Cannes
    26362 26000 65 Valence
    73065 73000 60 Chambéry
    10387 10000 62 Troyes
    18033 18000 64 Bourges
    29232 29000 63 Quimper
    56260 56000 54 Vannes
    56121 56100 57 Lorient
    79191 79000 59 Niort
    85191 85000 57 La Roche-sur-Yon
    16015 16000 42 Angoulême
    65440 65000 40 Tarbes
    81004 81000 49 Albi
    82121 82000 61 Montauban
    11069 11000 46 Carcassonne
    62041 62000 42 Arras
    59183 59140 87 Dunkerque
    59512 59100 98 Roubaix
    68066 68000 67 Colmar
    88160 88000 32 Épinal
    28085 28000 39 Chartres
    41018 41000 46 Blois
    27229 27000 47 Évreux
    53130 53000 50 Laval
    89024 89000 35 Auxerre
    71270 71000 34 Mâcon
    01053 01000 42 Bourg-en-Bresse
    05061 05000 41 Gap
    24322 24000 30 Périgueux
    19031 19100 46 Brive-la-Gaillarde
    64102 64100 52 Bayonne
    15014 15000 26 Aurillac
    43157 43000 19 Le Puy-en-Velay
    48095 48000 12 Mende
    23096 23000 13 Guéret
    2A004 20000 73 Ajaccio
    2A247 20137 12 Porto-Vecchio
    2B033 20200 48 Bastia
    2B096 20250 7 Corte
    97105 97100 10 Basse-Terre
    97120 97110 15 Pointe-à-Pitre
    97209 97200 76 Fort-de-France
    97302 97300 63 Cayenne
    97411 97400 150 Saint-Denis
    97416 97410 84 Saint-Pierre
    """
)

#: INSEE country code (the NIR's ``99`` + these three digits) and name, for births abroad.
COUNTRIES: tuple[tuple[str, str], ...] = (
    ("350", "Maroc"),
    ("352", "Algérie"),
    ("351", "Tunisie"),
    ("139", "Portugal"),
    ("127", "Italie"),
    ("134", "Espagne"),
    ("109", "Allemagne"),
    ("131", "Belgique"),
    ("132", "Royaume-Uni"),
    ("341", "Sénégal"),
    ("335", "Mali"),
    ("208", "Turquie"),
    ("243", "Viêt Nam"),
    ("216", "Chine"),
)

STREETS: tuple[str, ...] = (
    "rue de la République",
    "avenue Jean Jaurès",
    "rue Victor Hugo",
    "boulevard Gambetta",
    "rue Pasteur",
    "rue du Général de Gaulle",
    "allée des Tilleuls",
    "chemin des Vignes",
    "impasse des Lilas",
    "rue de l'Église",
    "rue des Écoles",
    "avenue de la Gare",
    "rue Jules Ferry",
    "rue Émile Zola",
    "rue Nationale",
    "rue du Moulin",
    "route de Paris",
    "rue Voltaire",
    "rue Jean Moulin",
    "rue des Acacias",
    "rue du Stade",
    "rue de la Paix",
    "place de la Mairie",
    "rue Carnot",
    "avenue des Marronniers",
    "rue de la Fontaine",
    "quai de la Loire",
    "rue Aristide Briand",
    "cours Lafayette",
    "rue Saint-Jacques",
    "rue des Jardins",
    "rue Anatole France",
    "avenue du Maréchal Foch",
    "rue Paul Bert",
    "rue des Cerisiers",
    "rue de Verdun",
)

_WEIGHTS = tuple(commune.weight for commune in COMMUNES)


def pick_commune(rng: random.Random) -> Commune:
    """Draw a commune, the larger ones more often."""
    return rng.choices(COMMUNES, weights=_WEIGHTS)[0]


def make_address(rng: random.Random, commune: Commune | None = None) -> Address:
    """Draw a street address, in ``commune`` or in a commune drawn for it."""
    number = rng.randint(1, 160)
    suffix = rng.choices(("", " bis", " ter"), weights=(92, 6, 2))[0]
    line = f"{number}{suffix} {rng.choice(STREETS)}"
    return Address(line=line, commune=commune or pick_commune(rng))


def make_phone(rng: random.Random, *, mobile: bool) -> str:
    """Draw a phone number in the ranges ARCEP reserves for fiction, so none rings anyone.

    Mobiles are ``06 39 98 xx xx``; landlines ``01 99 00 xx xx`` and its regional equivalents.
    """
    if mobile:
        prefix = "06 39 98"
    else:
        prefix = rng.choice(("01 99 00", "02 61 91", "03 53 01", "04 65 71", "05 36 49"))
    return f"{prefix} {rng.randint(0, 99):02d} {rng.randint(0, 99):02d}"


def address_element(address: Address, *, use: str) -> dict[str, Any]:
    """Return a FHIR ``Address`` element with the commune's INSEE code as FR Core's extension."""
    return {
        "extension": [
            {
                "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                "valueCoding": {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                    "code": address.commune.insee,
                },
            }
        ],
        "use": use,
        "type": "both",
        "text": address.text,
        "line": [address.line],
        "city": address.commune.name,
        "postalCode": address.commune.postcode,
        "country": "FR",
    }
