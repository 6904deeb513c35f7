"""The concepts of the synthetic world and their English words.

Every content word is a *lemma* of a *sense*. Two lemmas of one sense are synonyms; the two senses
of an adjective dimension or of a verb pair are antonyms. Nouns are grouped into classes, and each
class has a class word (its hypernym). Which noun classes a verb or adjective sense prefers is drawn
from the world seed, so every sense has its own distributional fingerprint in every language alike:
that shared structure (not parallel text) is what lets masked-LM pretraining align the languages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# English surface words. These are dictionary words, not corpus text.
NOUN_CLASSES: dict[str, tuple[str, ...]] = {
    "animal": ("dog", "cat", "horse", "cow", "goat"),
    "fruit": ("apple", "pear", "plum", "lemon", "mango"),
    "tool": ("hammer", "saw", "drill", "knife", "shovel"),
    "vehicle": ("car", "bus", "truck", "bike", "boat"),
    "furniture": ("chair", "table", "bed", "desk", "sofa"),
    "instrument": ("guitar", "piano", "drum", "violin", "flute"),
    "garment": ("shirt", "coat", "hat", "dress", "scarf"),
    "vessel": ("cup", "bowl", "jar", "bottle", "vase"),
}

# dimension -> (pole A lemmas, pole B lemmas); lemmas of one pole are synonyms.
ADJECTIVE_DIMENSIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "size": (("big", "large"), ("small", "little")),
    "age": (("old", "ancient"), ("new", "modern")),
    "weight": (("heavy", "hefty"), ("light", "airy")),
    "cleanliness": (("clean", "spotless"), ("dirty", "filthy")),
    "price": (("cheap", "inexpensive"), ("expensive", "costly")),
    "temperature": (("hot", "warm"), ("cold", "chilly")),
    "beauty": (("pretty", "lovely"), ("ugly", "hideous")),
    "strength": (("strong", "sturdy"), ("weak", "fragile")),
    "speed": (("fast", "quick"), ("slow", "sluggish")),
    "length": (("long", "lengthy"), ("short", "brief")),
    "width": (("wide", "broad"), ("narrow", "slim")),
    "wetness": (("wet", "damp"), ("dry", "arid")),
    "loudness": (("loud", "noisy"), ("quiet", "silent")),
    "brightness": (("bright", "shiny"), ("dark", "dim")),
    "hardness": (("hard", "firm"), ("soft", "tender")),
    "fullness": (("full", "packed"), ("empty", "vacant")),
    "sharpness": (("sharp", "keen"), ("blunt", "dull")),
    "safety": (("safe", "secure"), ("dangerous", "risky")),
    "height": (("tall", "high"), ("low", "squat")),
    "thickness": (("thick", "dense"), ("thin", "flimsy")),
    "smell": (("fragrant", "aromatic"), ("smelly", "stinky")),
    "taste": (("sweet", "sugary"), ("bitter", "sour")),
    "texture": (("rough", "coarse"), ("smooth", "sleek")),
    "rarity": (("rare", "scarce"), ("common", "ordinary")),
}

# pair -> (pole A lemmas, pole B lemmas) as (base form, third person singular).
VERB_PAIRS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    "trade": ((("buy", "buys"), ("purchase", "purchases")), (("sell", "sells"), ("vend", "vends"))),
    "keep": ((("find", "finds"), ("discover", "discovers")), (("lose", "loses"), ("misplace", "misplaces"))),
    "feel": ((("love", "loves"), ("adore", "adores")), (("hate", "hates"), ("detest", "detests"))),
    "make": ((("build", "builds"), ("assemble", "assembles")), (("break", "breaks"), ("smash", "smashes"))),
    "lend": ((("borrow", "borrows"), ("rent", "rents")), (("lend", "lends"), ("loan", "loans"))),
    "show": ((("hide", "hides"), ("conceal", "conceals")), (("show", "shows"), ("display", "displays"))),
    "hold": ((("carry", "carries"), ("hold", "holds")), (("drop", "drops"), ("release", "releases"))),
    "want": ((("want", "wants"), ("desire", "desires")), (("refuse", "refuses"), ("reject", "rejects"))),
}

PLACES: tuple[str, ...] = ("park", "market", "school", "kitchen", "garden", "station", "harbor", "library")

# Person states used by the event scripts (hellaswag, cosmosqa) and the corpus.
PERSON_STATES: tuple[tuple[str, str], ...] = (
    ("happy", "glad"),
    ("sad", "unhappy"),
    ("angry", "furious"),
    ("calm", "relaxed"),
)

NAMES: tuple[str, ...] = (
    "Maria",
    "Tom",
    "Aisha",
    "Kenji",
    "Lena",
    "Omar",
    "Priya",
    "Ivan",
    "Sofia",
    "Juan",
    "Mei",
    "Kofi",
    "Elif",
    "Nikos",
    "Rosa",
    "Amit",
    "Zara",
    "Hugo",
    "Nadia",
    "Pablo",
    "Yuki",
    "Samir",
    "Olga",
    "Ravi",
)

# Function words: concept id -> English form. Other languages get generated forms.
FUNCTION_WORDS: dict[str, str] = {
    "a": "a",
    "the": "the",
    "is": "is",
    "not": "not",
    "does": "does",
    "and": "and",
    "kind": "kind",
    "of": "of",
    "in": "in",
    "now": "now",
    "has": "has",
    "no": "no",
    "longer": "longer",
    "feels": "feels",
    "then": "then",
    "who": "who",
    "what": "what",
    "where": "where",
    "which": "which",
    "true": "true",
    "these": "these",
    "how": "how",
    "because": "because",
    "money": "money",
    "owns": "owns",
    "acc": "acc",
    "link": "link",  # object marker and attributive particle: unused in English
}


@dataclass(frozen=True)
class Sense:
    """One meaning: its lemmas are synonyms; `antonym` names the opposite sense (or '')."""

    sid: str
    pos: str  # noun | class | adj | verb | place | state
    lemmas: tuple[str, ...]
    antonym: str = ""
    group: str = ""  # noun class, adjective dimension or verb pair
    classes: tuple[str, ...] = ()  # preferred noun classes (verbs, adjectives)


@dataclass
class Lexicon:
    senses: dict[str, Sense]
    english: dict[str, str] = field(default_factory=dict)  # lemma id -> English surface form
    lemma_sense: dict[str, str] = field(default_factory=dict)  # lemma id -> sense id

    def of_pos(self, pos: str) -> list[Sense]:
        return [s for s in self.senses.values() if s.pos == pos]

    def members(self, cls: str) -> tuple[str, ...]:
        return tuple(s.sid for s in self.senses.values() if s.pos == "noun" and s.group == cls)

    def sense_of(self, lemma: str) -> Sense:
        return self.senses[self.lemma_sense[lemma]]

    def lemma_ids(self) -> list[str]:
        return list(self.lemma_sense)


def build_lexicon(seed: int) -> Lexicon:
    """All senses with seeded selectional preferences; same seed -> same lexicon."""
    rng = random.Random(f"lexicon-{seed}")
    classes = list(NOUN_CLASSES)
    senses: dict[str, Sense] = {}
    english: dict[str, str] = {}

    def add(sense: Sense, forms: dict[str, str]) -> None:
        senses[sense.sid] = sense
        english.update(forms)

    for cls, nouns in NOUN_CLASSES.items():
        add(Sense(f"c:{cls}", "class", (f"c:{cls}",), group=cls), {f"c:{cls}": cls})
        for noun in nouns:
            add(Sense(f"n:{noun}", "noun", (f"n:{noun}",), group=cls), {f"n:{noun}": noun})

    def preferred() -> tuple[str, ...]:
        return tuple(sorted(rng.sample(classes, 4)))

    for dim, poles in ADJECTIVE_DIMENSIONS.items():
        ids = [f"a:{dim}:{i}" for i in range(2)]
        for i, lemmas in enumerate(poles):
            lem_ids = tuple(f"a:{w}" for w in lemmas)
            add(
                Sense(ids[i], "adj", lem_ids, antonym=ids[1 - i], group=dim, classes=preferred()),
                {f"a:{w}": w for w in lemmas},
            )
    for pair, poles in VERB_PAIRS.items():
        ids = [f"v:{pair}:{i}" for i in range(2)]
        for i, lemmas in enumerate(poles):
            lem_ids = tuple(f"v:{base}" for base, _ in lemmas)
            add(
                Sense(ids[i], "verb", lem_ids, antonym=ids[1 - i], group=pair, classes=preferred()),
                {f"v:{base}": third for base, third in lemmas},
            )
    for place in PLACES:
        add(Sense(f"p:{place}", "place", (f"p:{place}",)), {f"p:{place}": place})
    for i, lemmas in enumerate(PERSON_STATES):
        lem_ids = tuple(f"s:{w}" for w in lemmas)
        add(Sense(f"s:{i}", "state", lem_ids, antonym=f"s:{i ^ 1}"), {f"s:{w}": w for w in lemmas})

    lemma_sense = {lem: s.sid for s in senses.values() for lem in s.lemmas}
    for fid, form in FUNCTION_WORDS.items():
        english[f"f:{fid}"] = form
    return Lexicon(senses=senses, english=english, lemma_sense=lemma_sense)
