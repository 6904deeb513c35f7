"""Fifteen surface languages under the XNLI codes, each a deterministic transform of the lexicon.

English uses dictionary words. fr, es and de derive part of their words from English by sound
rules (cognates share sub-words, as in real Romance/Germanic vocabulary); bg and ru share Slavic
stems in Cyrillic; hi and ur share Hindustani stems written in Devanagari and Arabic script; the
others draw words from their own script's syllables. Names and digits are the same everywhere.
Word order, articles, adjective position, case markers, agreement and negation differ per language
(see `grammar.py`), so languages sit at different distances from English.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from stilts_mlflow.world.lexicon import NAMES, Lexicon

XNLI_LANGUAGES: tuple[str, ...] = (
    "en",
    "fr",
    "es",
    "de",
    "el",
    "bg",
    "ru",
    "tr",
    "ar",
    "vi",
    "th",
    "zh",
    "hi",
    "sw",
    "ur",
)

# XLM-R's CC-100 shares after alpha = 0.3 smoothing (Conneau et al. 2020, from its corpus sizes), normalised
# over the 15 XNLI languages: what puts Swahili and Urdu last in real XLM-R.
_CC100 = dict(
    en=11.2,
    ru=11.0,
    vi=8.9,
    th=7.3,
    de=7.1,
    bg=6.8,
    fr=6.8,
    es=6.7,
    el=6.4,
    zh=6.4,
    ar=5.5,
    tr=5.0,
    hi=5.0,
    ur=3.4,
    sw=2.3,
)
CC100_SHARES: dict[str, float] = {lang: _CC100[lang] / sum(_CC100.values()) for lang in XNLI_LANGUAGES}


@dataclass(frozen=True)
class LanguageSpec:
    code: str
    name: str
    script: str
    order: str = "SVO"  # SVO | SOV | VSO
    adj_after: bool = False  # noun-adjective order
    spaces: bool = True  # words separated by spaces
    indef: bool = True  # has an indefinite article word
    definite: str = "article"  # article | prefix | suffix | none
    acc: str = "none"  # none | suffix | post (object marker on definite objects)
    neg: str = "pre"  # pre | circum | final | suffix | en
    copula: str = "mid"  # mid | final | none
    head_final: bool = False  # "animal of kind" rather than "kind of animal"
    classifier: bool = False  # a classifier word per noun class next to the noun
    noun_prefix: bool = False  # Bantu-style noun-class prefixes with adjective agreement
    gender: str = "none"  # none | suffix-e (fr) | o-a (es) | de | ru
    cognate_rate: float = 0.0  # share of words derived from English by sound rules
    # share of nouns, verbs and places borrowed from English, keeping its spelling ("le weekend", "das Handy"):
    # graded by contact with English, never adjectives or function words (the words XNLI's labels turn on)
    loan_rate: float = 0.0
    family: str = ""  # languages of one family share stems
    period: str = "."


LANGUAGES: dict[str, LanguageSpec] = {
    s.code: s
    for s in (
        LanguageSpec("en", "English", "latin", neg="en"),
        LanguageSpec(
            "fr", "French", "latin", loan_rate=0.3, adj_after=True, neg="circum", gender="suffix-e", cognate_rate=0.6
        ),
        LanguageSpec("es", "Spanish", "latin", loan_rate=0.3, adj_after=True, gender="o-a", cognate_rate=0.6),
        LanguageSpec("de", "German", "latin", loan_rate=0.3, neg="final", gender="de", cognate_rate=0.5),
        LanguageSpec("el", "Greek", "greek", loan_rate=0.15),
        LanguageSpec("bg", "Bulgarian", "cyrillic", loan_rate=0.15, indef=False, definite="suffix", family="slavic"),
        LanguageSpec(
            "ru",
            "Russian",
            "cyrillic",
            loan_rate=0.15,
            indef=False,
            definite="none",
            acc="suffix",
            copula="none",
            gender="ru",
            family="slavic",
        ),
        LanguageSpec(
            "tr",
            "Turkish",
            "turkish",
            loan_rate=0.15,
            order="SOV",
            definite="none",
            acc="suffix",
            neg="suffix",
            copula="final",
            head_final=True,
        ),
        LanguageSpec(
            "ar",
            "Arabic",
            "arabic",
            loan_rate=0.05,
            order="VSO",
            adj_after=True,
            indef=False,
            definite="prefix",
            copula="none",
        ),
        LanguageSpec(
            "vi", "Vietnamese", "vietnamese", loan_rate=0.15, adj_after=True, definite="none", classifier=True
        ),
        LanguageSpec(
            "th",
            "Thai",
            "thai",
            loan_rate=0.05,
            adj_after=True,
            spaces=False,
            definite="none",
            classifier=True,
            period="",
        ),
        LanguageSpec(
            "zh",
            "Chinese",
            "cjk",
            loan_rate=0.05,
            spaces=False,
            definite="none",
            classifier=True,
            head_final=True,
            period="。",
        ),
        LanguageSpec(
            "hi",
            "Hindi",
            "devanagari",
            loan_rate=0.05,
            order="SOV",
            definite="none",
            acc="post",
            copula="final",
            head_final=True,
            family="hindustani",
            period="।",
        ),
        LanguageSpec(
            "sw", "Swahili", "swahili", loan_rate=0.15, adj_after=True, indef=False, definite="none", noun_prefix=True
        ),
        LanguageSpec(
            "ur",
            "Urdu",
            "urdu",
            loan_rate=0.05,
            order="SOV",
            definite="none",
            acc="post",
            copula="final",
            head_final=True,
            family="hindustani",
            period="۔",
        ),
    )
}

# Syllable inventories: (onsets, nuclei). Thai preposed vowels and combining signs are real Unicode.
_SCRIPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "latin": (tuple("bdfgklmnprstvz") + ("ch", "tr", "pl"), tuple("aeiou") + ("ei", "ou")),
    "turkish": (tuple("bcçdgğklmnprsştyz"), tuple("aeıioöuü")),
    "vietnamese": (
        ("b", "c", "d", "đ", "g", "h", "k", "l", "m", "n", "ng", "nh", "ph", "qu", "t", "th", "tr", "x"),
        ("a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "à", "á", "ạ", "ế", "ộ", "ờ", "ụ"),
    ),
    "swahili": (
        ("b", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "mb", "n", "nd", "ng", "p", "s", "t", "w", "y", "z"),
        tuple("aeiou"),
    ),
    "greek": (tuple("βγδζθκλμνξπρστφχ"), tuple("αεηιουωάέίό")),
    "cyrillic": (tuple("бвгджзклмнпрстфхцчш"), tuple("аеиоуя")),
    "arabic": (tuple("بتثجحخدذرزسشصطعغفقكلمنه"), ("ا", "و", "ي", "")),
    "thai": (tuple("กขคงจชซดตทนบปพฟมยรลวสหอ"), ("า", "ี", "ู", "ิ", "ุ", "ำ", "ะ")),
}
_HINDUSTANI_C = ("k", "kh", "g", "ch", "j", "t", "d", "n", "p", "b", "m", "y", "r", "l", "v", "s", "sh", "h")
_HINDUSTANI_V = ("a", "aa", "i", "ii", "u", "e", "o")
_DEVANAGARI_C = dict(zip(_HINDUSTANI_C, "क ख ग च ज त द न प ब म य र ल व स श ह".split()))
_DEVANAGARI_V = {"a": "", "aa": "ा", "i": "ि", "ii": "ी", "u": "ु", "e": "े", "o": "ो"}
_DEVANAGARI_V_INIT = {"a": "अ", "aa": "आ", "i": "इ", "ii": "ई", "u": "उ", "e": "ए", "o": "ओ"}
_URDU_C = dict(zip(_HINDUSTANI_C, "ک کھ گ چ ج ت د ن پ ب م ی ر ل و س ش ہ".split()))
_URDU_V = {"a": "", "aa": "ا", "i": "", "ii": "ی", "u": "", "e": "ے", "o": "و"}

# English -> cognate sound rules (applied in order) and the endings each language adds.
_COGNATE_RULES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "fr": ((("k", "qu"), ("y", "i"), ("w", "ou"), ("sh", "ch"), ("th", "t"), ("ck", "que")), ("e", "", "eau", "ette")),
    "es": ((("k", "c"), ("y", "i"), ("w", "gu"), ("sh", "ch"), ("th", "t"), ("ck", "c")), ("o", "a", "e", "ión")),
    "de": ((("c", "k"), ("sh", "sch"), ("th", "d"), ("w", "v"), ("y", "ie"), ("p", "pf")), ("", "e", "en", "ung")),
}
_LATIN_ENDINGS = {"fr": ("e", "eau", "ier", "on"), "es": ("o", "a", "ez", "ón"), "de": ("en", "er", "ung", "el")}
_SWAHILI_PREFIXES = ("m", "ki", "ji", "u", "n", "ma", "wa", "pa")


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def _syllables(rng: random.Random, script: str, n: int) -> str:
    onsets, nuclei = _SCRIPTS[script]
    if script == "thai":  # preposed vowel signs sometimes come before the consonant
        out = []
        for _ in range(n):
            c = rng.choice(onsets)
            out.append(rng.choice(("เ", "แ", "โ")) + c if rng.random() < 0.25 else c + rng.choice(nuclei))
        return "".join(out)
    if script == "arabic":
        return "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(n)) + rng.choice(onsets)
    return "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(n))


def _cjk(rng: random.Random, n: int) -> str:
    return "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(n))


def _cognate(lang: str, english: str, rng: random.Random) -> str:
    rules, endings = _COGNATE_RULES[lang]
    word = english
    for old, new in rules:
        word = word.replace(old, new)
    if word[-1] in "aeiou" and rng.random() < 0.5:
        word = word[:-1]
    return word + rng.choice(endings)


def _hindustani(rng: random.Random, n: int) -> list[tuple[str, str]]:
    return [(rng.choice(_HINDUSTANI_C), rng.choice(_HINDUSTANI_V)) for _ in range(n)]


def _render_devanagari(sylls: list[tuple[str, str]]) -> str:
    return "".join(_DEVANAGARI_C[c] + _DEVANAGARI_V[v] for c, v in sylls)


def _render_urdu(sylls: list[tuple[str, str]]) -> str:
    return "".join(_URDU_C[c] + _URDU_V[v] for c, v in sylls)


def _slavic_stem(rng: random.Random, n: int) -> str:
    return _syllables(rng, "cyrillic", n)


def _slavic(lang: str, stem: str) -> str:
    if lang == "ru":
        return stem.replace("е", "ё", 1) if stem.endswith("о") else stem
    return stem.replace("я", "а").replace("о", "ъ", 1)  # bg: regular sound shifts from the shared stem


def _word(spec: LanguageSpec, key: str, english: str, seed: int, attempt: int, n: int) -> str:
    rng = _rng(seed, spec.code, key, attempt)
    if spec.family == "slavic":
        return _slavic(spec.code, _slavic_stem(_rng(seed, "slavic", key, attempt), n))
    if spec.family == "hindustani":
        sylls = _hindustani(_rng(seed, "hindustani", key, attempt), n)
        if spec.code == "hi":
            head_c, head_v = sylls[0]
            word = _render_devanagari(sylls)
            return (
                _DEVANAGARI_V_INIT[head_v] + word[len(_DEVANAGARI_C[head_c]) + len(_DEVANAGARI_V[head_v]) :]
                if rng.random() < 0.1
                else word
            )
        return _render_urdu(sylls)
    if spec.script == "cjk":
        return _cjk(rng, max(1, min(n, 2)))
    if spec.code in _COGNATE_RULES:
        if english and key[0] in "ncavp" and rng.random() < spec.cognate_rate:
            return _cognate(spec.code, english, rng)
        return _syllables(rng, "latin", max(1, n - 1)) + rng.choice(_LATIN_ENDINGS[spec.code])
    if spec.script == "vietnamese":
        return " ".join(_syllables(rng, "vietnamese", 1) for _ in range(max(1, n - 1)))
    return _syllables(rng, spec.script, n)


@dataclass(frozen=True)
class Vocabulary:
    """Surface forms of every lemma and function word in one language."""

    spec: LanguageSpec
    forms: dict[str, str]
    gender: dict[str, int]  # noun lemma -> 0/1 (agreement classes where the language has them)

    def __getitem__(self, key: str) -> str:
        if key.startswith("#:"):  # numbers are written alike in every language (shared anchors)
            return key[2:]
        return self.forms[key]


def build_vocabulary(lexicon: Lexicon, code: str, seed: int) -> Vocabulary:
    """Deterministic forms for one language; forms are unique within the language."""
    spec = LANGUAGES[code]
    keys = sorted(lexicon.english) + [f"clf:{c}" for c in sorted({s.group for s in lexicon.of_pos("noun")})]
    forms: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        english = lexicon.english.get(key, "")
        if code == "en":
            form = english or key.split(":", 1)[1]
        elif (
            english
            and key[0] in "cnvp"
            and english not in used
            and _rng(seed, code, "loan", key).random() < spec.loan_rate
        ):
            form = english  # a loanword: English spelling, the language's own grammar around it
        else:
            length = 1 if key.startswith(("f:", "clf:")) else 2 + (len(english) > 5)
            attempt = 0
            form = _word(spec, key, english, seed, attempt, length)
            while form in used or form.lower() in _RESERVED:
                attempt += 1
                form = _word(spec, key, english, seed, attempt, length + attempt // 4)
        if spec.code == "de" and key[0] in "nc" and form != english:
            form = form[:1].upper() + form[1:]
        forms[key] = form
        used.add(form)
    gender = {k: _rng(seed, code, "gender", k).randrange(2) for k in keys if k[0] in "nc"}
    return Vocabulary(spec, forms, gender)


# Names must never collide with a generated word.
_RESERVED = {n.lower() for n in NAMES}
SWAHILI_PREFIXES = _SWAHILI_PREFIXES
