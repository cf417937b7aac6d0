"""A seeded fictional world written as HotpotQA-format multi-hop questions (the demo's data).

The world: countries, cities, rivers, continents, languages, people and organisations, tied by
relations (born in, works at, married to, founded by, based in, located in, capital of). Each
entity has one short encyclopedia paragraph (3-4 templated sentences of 6-14 words), the same
paragraph in every question that uses it. Questions, in the exact HotpotQA JSON format:

  * bridge (two hops across two paragraphs), e.g. "In which city was the founder of Zorvex
    Labs born?": paragraph "Zorvex Labs" says "Zorvex Labs was founded by Mira Tolan.",
    paragraph "Mira Tolan" says "Mira Tolan was born in the city of Quenby.";
  * comparison of two entities of one kind ("Who was born first, A or B?"), about half of
    them yes/no ("Were A and B born in the same city?").

Each question has its 2 gold paragraphs + 8 distractor paragraphs of the question entity's
kind (other people, other companies, ...), so retrieval is not trivial: the first hop's
relation appears in every distractor. The bridge entity is of another kind, so its fact is
the only sentence of that relation in the context (findable in one retrieval step, as the
paper's protocol assumes). Professions, industries, rivers, continents and languages come from
small vocabularies shared by all worlds; names are not. The answer of a non-yes/no question is
always a verbatim span of a supporting sentence, and every question names the entity of its
first supporting sentence and shares its relation word.

Train and test worlds are disjoint: every full name (a title) belongs to exactly one world by a
hash of its spelling. Two name styles:
  * "syllables" (default): every name *word* is built from one syllable inventory and belongs to
    one world, so test names are unseen words made of seen sub-word pieces.
  * "words": names combine words of fixed inventories shared by both worlds
    ("Mira Thorne", "Port Alder", "Upper Valdor", "Cobalt Labs"), the way real names reuse
    common words that a real tokenizer and a pretrained model know. A test name is a new
    combination, with new facts. Easier to store in one latent vector; harder for the demo's
    reader to tell apart from distractors (BENCHMARKS.md, "Name styles").
Facts are drawn per world, so a model can only answer test questions by reading its memory.

CLI (same arguments -> byte-identical file):
  python -m lm_jax.data.synthetic --out=FILE --num_questions=N --seed=S --split_world=train \
      [--names=syllables|words]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import random
import zlib
from typing import Any

WORLDS = ("train", "test")

# Pronounceable pieces; names are 2-3 of them. Both worlds draw from the same inventory.
SYLLABLES = (
    "ba", "bel", "bri", "da", "dor", "fa", "fen", "gal", "gor", "ka", "kel", "kor",
    "la", "lan", "len", "lo", "ma", "mar", "mi", "mon", "na", "nor", "pa", "pel",
    "qua", "ra", "ren", "ri", "sa", "sel", "sor", "ta", "tan", "tel", "to", "tor",
    "va", "vel", "vex", "vi", "wen", "xa", "ya", "zan", "zor", "zu", "quen", "by",
)  # fmt: skip

# Name inventories of the "words" style, shared by both worlds (a full name's world is a hash
# of its spelling). None of these words occurs in a template or a shared vocabulary.
GIVEN_NAMES = (
    "Alma", "Arlo", "Bea", "Bren", "Cato", "Cole", "Dag", "Dara", "Edda", "Elin",
    "Fenn", "Finn", "Gala", "Greta", "Hale", "Hugo", "Ines", "Ivo", "Joss", "Juna",
    "Kira", "Knut", "Lars", "Lena", "Milo", "Mira", "Nils", "Nora", "Oona", "Pell",
    "Quin", "Rhea", "Sten", "Tova", "Ulla", "Vero", "Wren", "Xavi", "Yara", "Zeno",
)  # fmt: skip
FAMILY_NAMES = (
    "Alcott", "Ashby", "Ashdown", "Barrow", "Brandt", "Brody", "Calder", "Corwin", "Crane",
    "Delane", "Dorsey", "Dunmore", "Ellery", "Elwood", "Esker", "Fairley", "Farrow", "Foyle",
    "Garrick", "Gilroy", "Gresham", "Hadley", "Hartig", "Holloway", "Ingram", "Ives", "Jarrow",
    "Jessop", "Keane", "Kessler", "Kettle", "Lindqvist", "Lomax", "Lyle", "Marlow", "Mercer",
    "Merrick", "Nash", "Norcott", "Nyland", "Oakes", "Orwin", "Oswin", "Pemberton", "Prentice",
    "Pryor", "Quarry", "Radley", "Rourke", "Rowntree", "Selwyn", "Sutter", "Thorne", "Tolland",
    "Upton", "Vance", "Varley", "Wexler", "Whitlock", "Yardley",
)  # fmt: skip
CITY_PREFIXES = ("Port", "Lake", "Fort", "Mount", "Saint", "Glen", "North", "South")
PLACE_ROOTS = (
    "Alder", "Ashford", "Birch", "Bramble", "Brook", "Clover", "Coral", "Dale", "Elm", "Fern",
    "Flint", "Glass", "Hazel", "Holly", "Ivy", "Kestrel", "Linden", "Marsh", "Meadow", "Moss",
    "Oak", "Pebble", "Pine", "Quill", "Reed", "Rowan", "Sable", "Sorrel", "Stone", "Tansy",
    "Thorn", "Vale", "Wick", "Wolds", "Yarrow", "Bracken", "Cobble", "Heath", "Lark", "Sedge",
)  # fmt: skip
COUNTRY_PREFIXES = ("Upper", "Lower", "Greater", "Free", "United", "Royal")
COUNTRY_ROOTS = (
    "Valdor", "Ostria", "Kerlia", "Mendor", "Tavia", "Brisca", "Calvia", "Dunmark", "Estria",
    "Forlan", "Galicor", "Hesper", "Istovia", "Jorland", "Kalmar", "Lusena", "Morvia", "Norvale",
    "Pallas", "Rutenia",
)  # fmt: skip
ORG_WORDS = (
    "Apex", "Beacon", "Cobalt", "Crest", "Drift", "Echo", "Ember", "Fjord", "Glade", "Halo",
    "Harbor", "Iris", "Jade", "Keystone", "Lumen", "Mosaic", "Nimbus", "Nova", "Onyx", "Orbit",
    "Pinnacle", "Prism", "Quartz", "Radiant", "Ridge", "Summit", "Tundra", "Umbra", "Vertex",
    "Zenith", "Arc", "Bolt", "Cascade", "Delta", "Equinox", "Fulcrum", "Gazelle", "Horizon",
    "Ion", "Juno", "Kinetic", "Lattice", "Meteor", "Nexus", "Opal", "Pioneer", "Quasar",
    "Rocket", "Solstice", "Tidal", "Unity", "Vector", "Wayfarer", "Xenon", "Yonder", "Zephyr",
    "Atlas", "Boreal", "Cipher", "Dynamo",
)  # fmt: skip
NAME_STYLES = ("words", "syllables")
NAME_WORDS = (*GIVEN_NAMES, *FAMILY_NAMES, *CITY_PREFIXES, *PLACE_ROOTS, *COUNTRY_PREFIXES,
              *COUNTRY_ROOTS, *ORG_WORDS)

PROFESSIONS = (
    "painter", "singer", "engineer", "writer", "architect",
    "chemist", "pilot", "sculptor", "composer", "teacher",
)  # fmt: skip

# Continents, languages and rivers are shared by every world (like professions and industries):
# a question about them has a small closed set of answers, while the names it goes through are
# still unseen in the test world.
RIVERS = tuple(f"{w} River" for w in ("Amber", "Silver", "Cedar", "Willow", "Falcon", "Granite",
                                      "Heron", "Juniper", "Maple", "Otter", "Raven", "Thistle"))
CONTINENTS = ("Arctica", "Borealia", "Meridia", "Occidia", "Orientia")
LANGUAGES = ("Aldic", "Brennish", "Corvan", "Dalmic", "Essian", "Fennic", "Galdic", "Hollic",
             "Ivric", "Jorvish")

# Organisation name suffix -> the industry its first sentence names.
ORG_KINDS = (
    ("Labs", "research"),
    ("Motors", "car"),
    ("Records", "music"),
    ("Press", "publishing"),
    ("Bank", "banking"),
    ("Studios", "film"),
    ("Foods", "food"),
    ("Airlines", "travel"),
)
INDUSTRY_OF_SUFFIX = dict(ORG_KINDS)

# Sentence index of each fact in its entity's paragraph (supporting facts point at these).
PERSON_BORN_CITY, PERSON_BORN_YEAR, PERSON_JOB, PERSON_SPOUSE = 0, 1, 2, 3
CITY_COUNTRY, CITY_FOUNDED, CITY_POPULATION, CITY_RIVER = 0, 1, 2, 3
COUNTRY_CONTINENT, COUNTRY_CAPITAL, COUNTRY_LANGUAGE, COUNTRY_INDEPENDENT = 0, 1, 2, 3
ORG_CITY, ORG_FOUNDER, ORG_FOUNDED, ORG_EMPLOYEES = 0, 1, 2, 3


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def word_world(word: str) -> str:
    """The world a name (or name word) belongs to: a fixed function of its spelling (not of
    any seed)."""
    return WORLDS[zlib.crc32(word.lower().encode("ascii")) % 2]


@dataclasses.dataclass
class Person:
    name: str
    born_city: str
    born_year: int
    profession: str
    employer: str = ""
    spouse: str | None = None


@dataclasses.dataclass
class City:
    name: str
    country: str
    founded: int
    population: int  # thousands
    river: str | None


@dataclasses.dataclass
class Country:
    name: str
    continent: str
    capital: str
    language: str
    independent: int


@dataclasses.dataclass
class Org:
    name: str
    industry: str
    city: str
    founder: str
    founded: int
    employees: int


@dataclasses.dataclass
class World:
    split_world: str
    people: dict[str, Person]
    cities: dict[str, City]
    countries: dict[str, Country]
    orgs: dict[str, Org]

    def paragraph(self, title: str) -> list[str]:
        """The entity's sentences, fact order as in the *_INDEX constants."""
        if title in self.people:
            p = self.people[title]
            sents = [
                f"{p.name} was born in the city of {p.born_city}.",
                f"{p.name} was born in the year {p.born_year}.",
                f"{p.name} works as {_article(p.profession)} {p.profession} at {p.employer}.",
            ]
            if p.spouse:
                sents.append(f"{p.name} is married to {p.spouse}.")
            return sents
        if title in self.cities:
            c = self.cities[title]
            sents = [
                f"{c.name} is a city in the country of {c.country}.",
                f"{c.name} was founded in the year {c.founded}.",
                f"{c.name} has a population of about {c.population} thousand.",
            ]
            if c.river:
                sents.append(f"{c.name} lies on the banks of the {c.river}.")
            return sents
        if title in self.countries:
            k = self.countries[title]
            return [
                f"{k.name} is a country on the continent of {k.continent}.",
                f"The capital city of {k.name} is {k.capital}.",
                f"The official language of {k.name} is {k.language}.",
                f"{k.name} became independent in the year {k.independent}.",
            ]
        o = self.orgs[title]
        return [
            f"{o.name} is a {o.industry} company based in {o.city}.",
            f"{o.name} was founded by {o.founder}.",
            f"{o.name} was founded in the year {o.founded}.",
            f"{o.name} employs about {o.employees} people.",
        ]

    def kind(self, title: str) -> str:
        for kind in ("people", "cities", "countries", "orgs"):
            if title in getattr(self, kind):
                return kind
        raise KeyError(title)

    def titles(self) -> list[str]:
        return [*self.people, *self.cities, *self.countries, *self.orgs]

    def names(self, kind: str) -> list[str]:
        """The titles of one kind, in creation order (cached: the world is not changed after
        it is built)."""
        cache = self.__dict__.setdefault("_names", {})
        if kind not in cache:
            cache[kind] = list(getattr(self, kind))
        return cache[kind]

    def groups(self, kind: str, attr: str) -> list[list[str]]:
        """Titles of one kind grouped by an attribute value, groups of 2+ only (cached)."""
        cache = self.__dict__.setdefault("_groups", {})
        if (kind, attr) not in cache:
            groups: dict[Any, list[str]] = {}
            for n in self.names(kind):
                groups.setdefault(getattr(getattr(self, kind)[n], attr), []).append(n)
            cache[kind, attr] = [g for g in groups.values() if len(g) >= 2]
        return cache[kind, attr]


class _SyllableNames:
    """Name words of one world built from the syllable inventory (style "syllables")."""

    def __init__(self, rng: random.Random, split_world: str, sizes: dict[str, int]):
        self.rng = rng
        self.split_world = split_world
        self.used: set[str] = set()
        self.given = [self.word(2, 2) for _ in range(max(20, sizes["people"] // 5))]
        self.family = [self.word(2, 3) for _ in range(max(40, sizes["people"] // 2))]

    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        """A new word of min_syl..max_syl syllables; one syllable longer if those run out
        (a big world uses up the 48 * 48 / 2 two-syllable words of its half)."""
        for attempt in range(100_000):
            n = self.rng.randint(min_syl, max_syl + attempt // 200)
            w = "".join(self.rng.choice(SYLLABLES) for _ in range(n)).capitalize()
            if w not in self.used and word_world(w) == self.split_world:
                self.used.add(w)
                return w
        raise RuntimeError("syllable inventory exhausted")  # pragma: no cover

    def country(self) -> str:
        return self.word(2, 3)

    def city(self) -> str:
        return self.word(2, 3)

    def person(self) -> str:  # may repeat; the caller skips names it already has
        return f"{self.rng.choice(self.given)} {self.rng.choice(self.family)}"

    def org(self) -> str:
        return f"{self.word(2, 2)} {self.rng.choice(ORG_KINDS)[0]}"


class _WordNames:
    """Full names of one world combined from the shared inventories (style "words")."""

    PARTS = {
        "country": (COUNTRY_PREFIXES, COUNTRY_ROOTS),
        "city": (CITY_PREFIXES, PLACE_ROOTS),
        "person": (GIVEN_NAMES, FAMILY_NAMES),
        "company": (ORG_WORDS, tuple(INDUSTRY_OF_SUFFIX)),
    }

    def __init__(self, rng: random.Random, split_world: str, sizes: dict[str, int]):
        del sizes
        self.rng = rng
        self.split_world = split_world
        self.pools: dict[str, list[str]] = {}

    def _draw(self, key: str) -> str:
        if key not in self.pools:
            pool = [" ".join(c) for c in itertools.product(*self.PARTS[key])]
            pool = [n for n in pool if word_world(n) == self.split_world]
            self.rng.shuffle(pool)
            self.pools[key] = pool
        if not self.pools[key]:
            raise ValueError(f"the synthetic {self.split_world} world has used all its {key} "
                             "names; generate at most about 7,000 questions per world (use "
                             "more worlds)")
        return self.pools[key].pop()

    def country(self) -> str:
        return self._draw("country")

    def city(self) -> str:
        return self._draw("city")

    def person(self) -> str:
        return self._draw("person")

    def org(self) -> str:
        return self._draw("company")


def world_sizes(num_questions: int) -> dict[str, int]:
    """Entity counts: a few hundred entities, growing with the number of questions so that
    bridge questions rarely repeat."""
    scale = max(1.0, num_questions / 2500)
    return {
        "countries": max(6, round(10 * scale)),
        "cities": max(30, round(50 * scale)),
        "people": max(120, round(200 * scale)),
        "orgs": max(48, round(80 * scale)),
    }


def build_world(seed: int, split_world: str, sizes: dict[str, int],
                names: str = "syllables") -> World:
    """A seeded world; all its names belong to `split_world` (`names`: a NAME_STYLES style)."""
    if split_world not in WORLDS:
        raise ValueError(f"split_world must be one of {WORLDS}, got {split_world!r}")
    if names not in NAME_STYLES:
        raise ValueError(f"names must be one of {NAME_STYLES}, got {names!r}")
    rng = random.Random(f"lm_jax.synthetic.world:{split_world}:{seed}")
    namer = (_WordNames if names == "words" else _SyllableNames)(rng, split_world, sizes)

    country_names = [namer.country() for _ in range(sizes["countries"])]
    cities: dict[str, City] = {}
    for i in range(sizes["cities"]):
        name = namer.city()
        cities[name] = City(
            name=name,
            # Every country gets cities: round-robin first, so each has a capital.
            country=country_names[i % len(country_names)],
            founded=rng.randint(1100, 1899),
            population=rng.randint(20, 990),
            river=rng.choice(RIVERS) if rng.random() < 0.7 else None,
        )
    countries: dict[str, Country] = {}
    for name in country_names:
        own = [c for c in cities.values() if c.country == name]
        countries[name] = Country(
            name=name,
            continent=rng.choice(CONTINENTS),
            capital=rng.choice(own).name,
            language=rng.choice(LANGUAGES),
            independent=rng.randint(1700, 1990),
        )

    people: dict[str, Person] = {}
    city_names = list(cities)
    while len(people) < sizes["people"]:
        name = namer.person()
        if name in people:
            continue
        people[name] = Person(
            name=name,
            born_city=rng.choice(city_names),
            born_year=rng.randint(1900, 1999),
            profession=rng.choice(PROFESSIONS),
        )
    person_names = list(people)

    orgs: dict[str, Org] = {}
    while len(orgs) < sizes["orgs"]:
        name = namer.org()
        orgs[name] = Org(
            name=name,
            industry=INDUSTRY_OF_SUFFIX[name.rsplit(" ", 1)[1]],
            city=rng.choice(city_names),
            founder=rng.choice(person_names),
            founded=rng.randint(1900, 2020),
            employees=rng.randint(2, 99) * 10,
        )
    org_names = list(orgs)
    for p in people.values():
        p.employer = rng.choice(org_names)
    # About 40% of people are married, in pairs.
    singles = person_names[:]
    rng.shuffle(singles)
    for i in range(0, int(len(singles) * 0.4) // 2 * 2, 2):
        a, b = people[singles[i]], people[singles[i + 1]]
        a.spouse, b.spouse = b.name, a.name
    return World(split_world, people, cities, countries, orgs)


# ------------------------------------------------------------------------------ questions

# A question: (text, answer, [(title, sentence_index), ...]) or None when not applicable.
Question = tuple[str, str, list[tuple[str, int]]]


# (first-hop entity kind, hop, question, second-hop sentence index, answer attribute).
# The bridge entity is always of another kind than the question's entity, and the distractors
# are of the question's kind, so the second-hop fact is the only sentence of its relation in the
# context: a single-shot retriever can find both hops (as the paper's protocol assumes), while
# the first hop still has hard negatives (the same relation about other entities).
#
# Answers from the shared vocabularies (CLOSED_BRIDGES) are words the models saw in training;
# answers that are names of the question's world (NAME_BRIDGES, off by default) must be copied
# token by token from the evidence, which a generator of about a million parameters does not
# learn in the demo's minutes (and which one latent vector cannot hand to it).
CLOSED_BRIDGES = (
    ("orgs", "founder", "What is the profession of the founder of {}?", PERSON_JOB, "profession"),
    ("orgs", "org_city", "On which river lies the city where {} is based?", CITY_RIVER, "river"),
    ("people", "birth_city", "On which river lies the city where {} was born?", CITY_RIVER,
     "river"),
    ("people", "employer", "In which industry is the company where {} works?", ORG_CITY,
     "industry"),
    ("cities", "country", "On which continent is the country where {} is located?",
     COUNTRY_CONTINENT, "continent"),
    ("cities", "country", "What is the official language of the country where {} is located?",
     COUNTRY_LANGUAGE, "language"),
)  # fmt: skip
NAME_BRIDGES = (
    ("orgs", "founder", "In which city was the founder of {} born?", PERSON_BORN_CITY, "born_city"),
    ("orgs", "founder", "In what year was the founder of {} born?", PERSON_BORN_YEAR, "born_year"),
    ("orgs", "org_city", "In which country is the city where {} is based?", CITY_COUNTRY,
     "country"),
    ("people", "birth_city", "In which country is the city where {} was born?", CITY_COUNTRY,
     "country"),
    ("people", "employer", "Who founded the company where {} works?", ORG_FOUNDER, "founder"),
    ("people", "employer", "In which city is the company where {} works based?", ORG_CITY, "city"),
    ("cities", "country", "What is the capital of the country where {} is located?",
     COUNTRY_CAPITAL, "capital"),
)  # fmt: skip


def _hop(w: World, hop: str, name: str) -> tuple[int, Any]:
    """(sentence index of the first-hop fact in `name`'s paragraph, the bridge entity)."""
    if hop == "founder":
        return ORG_FOUNDER, w.people[w.orgs[name].founder]
    if hop == "org_city":
        return ORG_CITY, w.cities[w.orgs[name].city]
    if hop == "birth_city":
        return PERSON_BORN_CITY, w.cities[w.people[name].born_city]
    if hop == "employer":
        return PERSON_JOB, w.orgs[w.people[name].employer]
    if hop == "country":
        return CITY_COUNTRY, w.countries[w.cities[name].country]
    raise ValueError(hop)


def _bridge(w: World, template: tuple, name: str) -> Question | None:
    _, hop, question, fact, attr = template
    first, bridge = _hop(w, hop, name)
    answer = getattr(bridge, attr)
    # No answer (city without river), or the question's own entity ("who founded the company
    # where X works" when X founded it; "the capital of the country where X is" for a capital).
    if answer is None or answer == name:
        return None
    return question.format(name), str(answer), [(name, first), (bridge.name, fact)]


@dataclasses.dataclass(frozen=True)
class _Comparison:
    kind: str  # entity kind compared
    question: str  # with {a} and {b}
    fact: int  # sentence index of the compared fact in both paragraphs
    attr: str  # the compared attribute
    yes_no: bool = False
    # Ordering questions: does the larger value win (more employees) or the smaller (earlier)?
    larger_wins: bool = False


COMPARISONS = (
    _Comparison("people", "Who was born first, {a} or {b}?", PERSON_BORN_YEAR, "born_year"),
    _Comparison("orgs", "Which company was founded earlier, {a} or {b}?", ORG_FOUNDED, "founded"),
    _Comparison("orgs", "Which company has more employees, {a} or {b}?", ORG_EMPLOYEES,
                "employees", larger_wins=True),
    _Comparison("cities", "Which city was founded earlier, {a} or {b}?", CITY_FOUNDED, "founded"),
    _Comparison("cities", "Which city has a larger population, {a} or {b}?", CITY_POPULATION,
                "population", larger_wins=True),
    _Comparison("people", "Were {a} and {b} born in the same city?", PERSON_BORN_CITY,
                "born_city", yes_no=True),
    _Comparison("people", "Do {a} and {b} have the same profession?", PERSON_JOB, "profession",
                yes_no=True),
    _Comparison("cities", "Are {a} and {b} located in the same country?", CITY_COUNTRY, "country",
                yes_no=True),
    _Comparison("orgs", "Are {a} and {b} based in the same city?", ORG_CITY, "city",
                yes_no=True),
)  # fmt: skip


def _comparison(w: World, rng: random.Random, c: _Comparison) -> Question | None:
    entities = getattr(w, c.kind)
    names = w.names(c.kind)
    if c.yes_no:
        want_yes = rng.random() < 0.5
        if want_yes:
            multi = w.groups(c.kind, c.attr)
            if not multi:
                return None
            a, b = rng.sample(rng.choice(multi), 2)
        else:
            a, b = rng.sample(names, 2)
            if getattr(entities[a], c.attr) == getattr(entities[b], c.attr):
                return None
        answer = "yes" if getattr(entities[a], c.attr) == getattr(entities[b], c.attr) else "no"
    else:
        a, b = rng.sample(names, 2)
        ka, kb = getattr(entities[a], c.attr), getattr(entities[b], c.attr)
        if ka == kb:
            return None
        answer = a if (ka > kb) == c.larger_wins else b
    return c.question.format(a=a, b=b), answer, [(a, c.fact), (b, c.fact)]


def _distractors(w: World, rng: random.Random, kinds: list[str], taken: set[str],
                 n: int) -> list[str]:
    """n paragraphs of `kinds` (similar entities), spread evenly; then any kind if short."""
    chosen: list[str] = []
    taken = set(taken)
    per_kind = [n // len(kinds) + (i < n % len(kinds)) for i in range(len(kinds))]
    for kind, k in zip(kinds, per_kind, strict=True):
        names = w.names(kind)
        k = min(k, len(names) - sum(w.kind(t) == kind for t in taken))
        while k > 0:  # rejection sampling: worlds are much larger than 10 paragraphs
            t = names[rng.randrange(len(names))]
            if t not in taken:
                taken.add(t)
                chosen.append(t)
                k -= 1
    if len(chosen) < n:
        pool = [t for t in w.titles() if t not in taken]
        chosen += rng.sample(pool, n - len(chosen))
    return chosen


def generate(
    num_questions: int,
    seed: int = 0,
    split_world: str = "train",
    *,
    comparison_fraction: float = 0.2,  # HotpotQA's dev set: about 20% comparison
    name_answers: bool = False,
    num_distractors: int = 8,
    names: str = "syllables",
) -> list[dict[str, Any]]:
    """HotpotQA-format records (keys in the official order) of one synthetic world.

    Returns [{_id, answer, question, supporting_facts: [[title, sent_idx]], context:
    [[title, [sentence, ...]]], type, level}]. Deterministic in all arguments.
    """
    if num_questions < 0:
        raise ValueError(f"num_questions must be >= 0, got {num_questions}")
    world = build_world(seed, split_world, world_sizes(num_questions), names)
    rng = random.Random(f"lm_jax.synthetic.questions:{split_world}:{seed}")

    bridges = CLOSED_BRIDGES + (NAME_BRIDGES if name_answers else ())
    bridge_pool = [(t, entity) for t in bridges for entity in getattr(world, t[0])]
    rng.shuffle(bridge_pool)
    bridge_iter = iter(())
    seen: set[str] = set()
    records = []
    while len(records) < num_questions:
        if rng.random() < comparison_fraction:
            c = rng.choice(COMPARISONS)
            q = _comparison(world, rng, c)
            qtype, level = "comparison", ("easy" if c.yes_no else "medium")
        else:
            item = next(bridge_iter, None)
            if item is None:  # pool used up: start a new shuffled pass (allows repeats)
                rng.shuffle(bridge_pool)
                seen.clear()
                bridge_iter = iter(bridge_pool)
                continue
            q = _bridge(world, *item)
            qtype, level = "bridge", "hard"
        if q is None or q[0] in seen:
            continue
        question, answer, facts = q
        seen.add(question)
        gold = list(dict.fromkeys(t for t, _ in facts))
        # Comparisons: both entities' kind. Bridges: the question entity's kind only.
        titles = gold + _distractors(world, rng, [world.kind(gold[0])], set(gold),
                                     num_distractors)
        rng.shuffle(titles)
        context = []
        for t in titles:
            sents = world.paragraph(t)
            # Official layout: every sentence after the first keeps a leading space.
            context.append([t, [sents[0]] + [" " + s for s in sents[1:]]])
        records.append(
            {
                "_id": f"syn-{split_world}-{seed}-{len(records):06d}",
                "answer": answer,
                "question": question,
                "supporting_facts": [[t, i] for t, i in facts],
                "context": context,
                "type": qtype,
                "level": level,
            }
        )
    return records


def dumps(records: list[dict[str, Any]]) -> str:
    """The official file's serialisation: one compact JSON array with ASCII escapes."""
    return json.dumps(records, ensure_ascii=True, separators=(",", ":"))


def write(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Writes records atomically (temp file + rename), so a reader never sees half a file."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write(dumps(records))
    os.replace(tmp, path)


def write_hotpot_dir(
    manual_dir: str | os.PathLike,
    num_train: int,
    num_validation: int,
    seed: int = 0,
) -> dict[str, str]:
    """Writes a manual_dir the `hotpot_qa/distractor` builder reads: the train world as
    hotpot_train_v1.1.json, the (disjoint) test world as hotpot_dev_distractor_v1.json."""
    manual_dir = os.fspath(manual_dir)
    paths = {
        "train": os.path.join(manual_dir, "hotpot_train_v1.1.json"),
        "validation": os.path.join(manual_dir, "hotpot_dev_distractor_v1.json"),
    }
    write(paths["train"], generate(num_train, seed, "train"))
    write(paths["validation"], generate(num_validation, seed, "test"))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output JSON file (HotpotQA format)")
    parser.add_argument("--num_questions", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split_world", choices=WORLDS, default="train")
    parser.add_argument("--names", choices=NAME_STYLES, default="syllables")
    args = parser.parse_args(argv)
    records = generate(args.num_questions, args.seed, args.split_world, names=args.names)
    write(args.out, records)
    n_cmp = sum(r["type"] == "comparison" for r in records)
    print(
        json.dumps(
            {
                "out": args.out,
                "questions": len(records),
                "bridge": len(records) - n_cmp,
                "comparison": n_cmp,
                "yes_no": sum(r["answer"] in ("yes", "no") for r in records),
                "paragraphs": len({c[0] for r in records for c in r["context"]}),
            }
        )
    )


if __name__ == "__main__":
    main()


__all__ = ["generate", "dumps", "write", "write_hotpot_dir", "build_world", "word_world"]
