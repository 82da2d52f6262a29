"""French given names by birth cohort and common French family names.

The given names follow the fashions of each generation (INSEE's fichier des prénoms gives the
shape; the lists are hand-picked, a few dozen per sex and cohort) so that a woman born in 1940 is
more likely a Jeanne than a Jade. Family names are among the most frequent in France, including
the names of families who came from elsewhere.
"""

from __future__ import annotations

import random
from typing import Literal

Sex = Literal["male", "female"]


def _split(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


#: (first birth year of the cohort, female names, male names), oldest first.
_COHORTS: tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        0,
        _split(
            """
            Marie, Jeanne, Françoise, Monique, Jacqueline, Simone, Denise, Madeleine, Suzanne, Odette,
            Germaine, Yvette, Paulette, Colette, Renée, Marcelle, Lucienne, Andrée, Geneviève, Yvonne,
            Georgette, Gisèle, Huguette, Raymonde, Marguerite, Thérèse, Louise, Paule, Ginette, Josette,
            Micheline, Arlette, Christiane, Odile, Lucette, Jeannine, Solange, Éliane, Bernadette, Hélène
            """
        ),
        _split(
            """
            Jean, Pierre, Michel, André, Roger, Jacques, René, Marcel, Louis, Georges, Henri, Robert, Paul,
            Claude, Bernard, Raymond, Maurice, Lucien, Gérard, Joseph, Roland, Guy, Fernand, Albert,
            Gilbert, Émile, Gaston, Léon, Marius, Yves, Charles, Francis, Jean-Pierre, Jean-Claude, Daniel,
            Alain, Serge, Armand, Édouard, Camille
            """
        ),
    ),
    (
        1950,
        _split(
            """
            Martine, Nicole, Christine, Catherine, Sylvie, Isabelle, Chantal, Brigitte, Dominique,
            Patricia, Danielle, Michèle, Annie, Évelyne, Joëlle, Marie-Christine, Véronique, Nadine,
            Pascale, Maryse, Josiane, Élisabeth, Anne, Claudine, Marie-France, Agnès, Béatrice, Florence,
            Corinne, Laurence, Muriel, Hélène, Jocelyne, Ghislaine, Marie-Claude, Françoise, Fabienne,
            Mireille, Marie-Thérèse, Régine
            """
        ),
        _split(
            """
            Philippe, Alain, Patrick, Michel, Jean-Pierre, Bernard, Daniel, Christian, Gérard, Jean-Claude,
            Pascal, Éric, Thierry, Dominique, Didier, Jean-Luc, Jean-Marc, Gilles, Serge, Joël, Francis,
            Denis, Jean-Louis, Jean-François, Marc, Bruno, Hervé, Christophe, Jacques, Yves, Guy, Patrice,
            Jean-Paul, Jean-Michel, Roland, Jean-Jacques, Lionel, Claude, Olivier, Frédéric
            """
        ),
    ),
    (
        1970,
        _split(
            """
            Nathalie, Isabelle, Sandrine, Valérie, Stéphanie, Céline, Sophie, Karine, Virginie, Aurélie,
            Émilie, Laetitia, Caroline, Julie, Séverine, Christelle, Delphine, Audrey, Élodie, Mélanie,
            Vanessa, Sabrina, Carine, Cécile, Anne-Sophie, Marion, Amandine, Élise, Claire, Magali, Sonia,
            Alexandra, Nadia, Angélique, Jessica, Laure, Gaëlle, Hélène, Samia, Florence
            """
        ),
        _split(
            """
            Christophe, Stéphane, Sébastien, Nicolas, Frédéric, Laurent, David, Olivier, Julien, Jérôme,
            Cédric, Vincent, Fabrice, Thomas, Mathieu, Guillaume, Romain, Anthony, Arnaud, Alexandre,
            Franck, Yannick, Grégory, Sylvain, Benjamin, Damien, Ludovic, Emmanuel, Jean-Baptiste, Mickaël,
            Xavier, Pierre, Maxime, Florent, Karim, Mohamed, Samuel, Loïc, Rémi, François
            """
        ),
    ),
    (
        1990,
        _split(
            """
            Camille, Léa, Manon, Chloé, Laura, Marine, Pauline, Sarah, Océane, Mathilde, Anaïs, Justine,
            Marie, Clara, Lucie, Emma, Inès, Juliette, Margaux, Charlotte, Morgane, Jade, Alice, Louise,
            Léna, Zoé, Maëva, Eva, Lola, Romane, Élisa, Clémence, Julia, Noémie, Amélie, Lisa, Jeanne,
            Yasmine, Salomé, Audrey
            """
        ),
        _split(
            """
            Thomas, Nicolas, Alexandre, Maxime, Kevin, Quentin, Lucas, Hugo, Théo, Antoine, Clément,
            Romain, Julien, Enzo, Mathis, Louis, Paul, Nathan, Baptiste, Valentin, Tom, Florian, Alexis,
            Dylan, Adrien, Corentin, Jordan, Arthur, Raphaël, Gabriel, Léo, Axel, Mehdi, Yanis, Matthieu,
            Victor, Benjamin, Pierre, Jules, Bastien
            """
        ),
    ),
    (
        2010,
        _split(
            """
            Emma, Jade, Louise, Alice, Chloé, Lina, Rose, Léa, Anna, Mila, Ambre, Mia, Inès, Julia, Léna,
            Juliette, Zoé, Manon, Agathe, Lou, Camille, Iris, Romy, Nina, Léonie, Margaux, Victoire,
            Capucine, Héloïse, Apolline, Lucie, Éva, Gabrielle, Adèle, Sofia, Olivia, Clémence, Maëlys,
            Charlie, Alma
            """
        ),
        _split(
            """
            Gabriel, Léo, Raphaël, Louis, Arthur, Jules, Adam, Maël, Lucas, Hugo, Noah, Liam, Gabin, Sacha,
            Paul, Nathan, Aaron, Mohamed, Ethan, Tom, Éden, Léon, Timéo, Noé, Martin, Nolan, Marius,
            Victor, Mathis, Isaac, Axel, Théo, Valentin, Naël, Malo, Ayden, Samuel, Ismaël, Rayan, Côme
            """
        ),
    ),
)

FAMILY_NAMES: tuple[str, ...] = _split(
    """
    Martin, Bernard, Thomas, Petit, Robert, Richard, Durand, Dubois, Moreau, Laurent, Simon,
    Michel, Lefèbvre, Leroy, Roux, David, Bertrand, Morel, Fournier, Girard, Bonnet, Dupont,
    Lambert, Fontaine, Rousseau, Vincent, Muller, Lefèvre, Faure, André, Mercier, Blanc, Guérin,
    Boyer, Garnier, Chevalier, François, Legrand, Gauthier, Garcia, Perrin, Robin, Clément, Morin,
    Nicolas, Henry, Roussel, Mathieu, Gautier, Masson, Marchand, Duval, Denis, Dumont, Marie,
    Lemaire, Noël, Meyer, Dufour, Meunier, Brun, Blanchard, Giraud, Joly, Rivière, Lucas, Brunet,
    Gaillard, Barbier, Arnaud, Martinez, Gérard, Roche, Renard, Schmitt, Roy, Leroux, Colin, Vidal,
    Caron, Picard, Roger, Fabre, Aubert, Lemoine, Renaud, Dumas, Lacroix, Olivier, Philippe,
    Bourgeois, Pierre, Benoît, Rey, Leclerc, Payet, Rolland, Leclercq, Guillaume, Lecomte, Lopez,
    Jean, Dupuy, Guillot, Hubert, Berger, Carpentier, Sanchez, Dupuis, Moulin, Louis, Deschamps,
    Huet, Vasseur, Perez, Boucher, Fleury, Royer, Klein, Jacquet, Adam, Paris, Poirier, Marty,
    Aubry, Guyot, Carré, Charles, Renault, Charpentier, Ménard, Maillard, Baron, Bertin, Bailly,
    Hervé, Schneider, Fernandez, Le Gall, Collet, Léger, Bouvier, Julien, Prévost, Millet, Perrot,
    Daniel, Le Roux, Cousin, Germain, Breton, Besson, Langlois, Rémy, Le Goff, Pelletier, Lévêque,
    Perrier, Leblanc, Barré, Lebrun, Marchal, Weber, Mallet, Hamon, Boulanger, Jacob, Monnier,
    Michaud, Rodriguez, Guichard, Gillet, Étienne, Grondin, Poulain, Tessier, Chevallier, Collin,
    Chauvin, Da Silva, Bouchet, Gay, Lemaître, Bénard, Maréchal, Humbert, Reynaud, Antoine, Hoarau,
    Perret, Barthélemy, Cordier, Pichon, Lejeune, Gilbert, Lamy, Delaunay, Pasquier, Carlier,
    Laporte, Gomez, Nguyen, Diallo, Dos Santos, Ferreira, Gonzalez, Rodrigues, Haddad, Benali,
    Mansouri, Cohen, Lévy, Traoré, Chrétien, Lebreton, Hamel, Texier, Bouvet, Besnard, Jourdan,
    Lefort, Delmas, Tanguy, Favre, Navarro, Ollivier, Guillou, Cartier, Le Bihan, Kerjean, Bourdon,
    Devaux, Marin, Pons, Saint-Martin, Courtois, Vallée, Herbert, Jacquot, Labbé, Thibault,
    Pereira, Ribeiro, Bensaïd
    """
)


def _cohort(birth_year: int) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    chosen = _COHORTS[0]
    for cohort in _COHORTS:
        if birth_year >= cohort[0]:
            chosen = cohort
    return chosen


def pick_given(rng: random.Random, sex: Sex, birth_year: int) -> str:
    """Draw a given name fashionable for a person of ``sex`` born in ``birth_year``."""
    _, female, male = _cohort(birth_year)
    return rng.choice(female if sex == "female" else male)


def pick_given_names(rng: random.Random, sex: Sex, birth_year: int) -> tuple[str, ...]:
    """Draw the given names of the birth certificate: one, sometimes two or three, all different."""
    count = rng.choices((1, 2, 3), weights=(55, 35, 10))[0]
    names: list[str] = []
    while len(names) < count:
        name = pick_given(rng, sex, birth_year)
        if name not in names:
            names.append(name)
    return tuple(names)


def pick_family(rng: random.Random) -> str:
    """Draw a family name."""
    return rng.choice(FAMILY_NAMES)
