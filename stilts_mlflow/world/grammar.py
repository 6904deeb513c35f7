"""Logical forms and their realization as sentences in each language.

A sentence is realized as a list of (word, role) pairs; roles (NAME, V, DET, ADJ, N, NEG, ...) let
the English CCG tagger assign supertags. Languages differ in word order (SVO, SOV, VSO), adjective
position, articles (word, prefix, suffix or none), classifiers, case markers, agreement, negation
and copula, following their LanguageSpec.
"""

from __future__ import annotations

from dataclasses import dataclass

from stilts_mlflow.world.languages import SWAHILI_PREFIXES, Vocabulary

Word = tuple[str, str]  # (surface, role)


@dataclass(frozen=True)
class NP:
    noun: str  # lemma id: n:… (specific noun), c:… (class word) or p:… (place)
    adj: str | None = None  # lemma id a:…
    definite: bool = False


@dataclass(frozen=True)
class Event:
    """NAME VERB NP [in PLACE], optionally negated, optionally with a leading adverb."""

    subj: str
    verb: str  # v:… or f:owns
    obj: NP
    neg: bool = False
    place: str | None = None
    adverb: str | None = None  # f:now | f:then


@dataclass(frozen=True)
class Prop:
    """SUBJECT is ADJ (a thing's property or a person's state)."""

    subj: NP | str
    adj: str  # a:… or s:…
    neg: bool = False
    reading: str | None = None  # "#:371": a number written right after the property word


@dataclass(frozen=True)
class Isa:
    """a NOUN is a kind of CLASS."""

    noun: str
    cls: str


Clause = Event | Prop | Isa

_EN_BASE = {"f:owns": "own"}


def english_base(verb: str) -> str:
    """English base form of a verb lemma id (v:buy -> buy, f:owns -> own), for do-support."""
    return _EN_BASE.get(verb, verb.split(":", 1)[1])


_BACK = set("aıou")
_ROUNDED = set("oöuü")


def _turkish_acc(word: str) -> str:
    vowels = [ch for ch in word if ch in "aeıioöuü"]
    last = vowels[-1] if vowels else "e"
    suffix = ("u" if last in _ROUNDED else "ı") if last in _BACK else ("ü" if last in _ROUNDED else "i")
    return word + ("y" if word[-1] in "aeıioöuü" else "") + suffix


class Realizer:
    """Turns logical forms into sentences of one language."""

    def __init__(self, vocab: Vocabulary, noun_groups: dict[str, str]):
        self.v = vocab
        self.spec = vocab.spec
        self.groups = noun_groups  # noun/class lemma -> noun class (for classifiers and prefixes)

    # --- noun phrases -------------------------------------------------------------------------
    def np(self, np: NP, obj: bool = False) -> list[Word]:
        v, spec = self.v, self.spec
        noun, adj = v[np.noun], (v[np.adj] if np.adj else None)
        gender = v.gender.get(np.noun, 0)
        group = self.groups.get(np.noun, "")
        if adj is not None:
            if spec.gender == "suffix-e" and gender:
                adj += "e"
            elif spec.gender == "o-a":
                adj = (adj[:-1] if adj[-1] in "oa" else adj) + ("a" if gender else "o")
            elif spec.gender == "de":
                adj += "en" if np.definite else ("e" if gender else "es")
            elif spec.gender == "ru":
                adj += ("ую" if gender else "ый") if obj else ("ая" if gender else "ый")
        if spec.noun_prefix and group:
            prefix = SWAHILI_PREFIXES[sorted(set(self.groups.values())).index(group) % len(SWAHILI_PREFIXES)]
            noun = prefix + noun
            adj = prefix + adj if adj else None
        if spec.gender == "ru" and obj and gender:
            noun += "у"
        if spec.definite == "prefix" and np.definite:
            noun = "ال" + noun
            adj = "ال" + adj if adj else None
        core: list[Word] = [(noun, "N")]
        if adj is not None:
            if spec.code == "zh":
                core = [(adj, "ADJ"), (v["f:link"], "LINK"), (noun, "N")]
            elif spec.adj_after:
                core = [(noun, "N"), (adj, "ADJ")]
            else:
                core = [(adj, "ADJ"), (noun, "N")]
        if spec.definite == "suffix" and np.definite:
            core[0] = (core[0][0] + v["f:the"], core[0][1])
        if obj and np.definite and spec.acc == "suffix" and spec.code == "tr":
            core[-1] = (_turkish_acc(core[-1][0]), core[-1][1])
        clf = [(v[f"clf:{group}"], "CLF")] if spec.classifier and group else []
        article: list[Word] = []
        if np.definite and spec.definite == "article":
            article = [(v["f:the"], "DET")]
        elif not np.definite and spec.indef:
            article = [(v["f:a"], "DET")]
        if spec.code == "th":
            out = core + clf + ([(v["f:a"], "DET")] if not np.definite else [])
        elif spec.code == "zh":
            out = ([(v["f:a"], "DET")] if not np.definite else []) + clf + core
        elif spec.code == "vi":
            out = ([(v["f:a"], "DET")] if not np.definite else []) + clf + core
        elif spec.code == "tr" and not np.definite and adj is not None:
            out = [core[0], (v["f:a"], "DET"), core[1]]  # büyük bir köpek
        else:
            out = article + clf + core
        if obj and np.definite and spec.acc == "post":
            out = out + [(v["f:acc"], "ACC")]
        return out

    def pp(self, place: str) -> list[Word]:
        inside = self.np(NP(place, definite=True))
        prep = [(self.v["f:in"], "P")]
        return inside + prep if self.spec.head_final else prep + inside

    # --- clauses ------------------------------------------------------------------------------
    def verb(self, verb: str, neg: bool) -> tuple[list[Word], list[Word]]:
        """(verb group, clause-final words) for the language's negation strategy."""
        v, spec = self.v, self.spec
        form = v[verb]
        if spec.code == "sw":
            return [(("ha" if neg else "ana") + form, "V")], []
        if not neg:
            return [(form, "V")], []
        if spec.neg == "en":
            return [(v["f:does"], "AUX"), (v["f:not"], "NEG"), (english_base(verb), "V")], []
        if spec.neg == "circum":
            return [(v["f:not"], "NEG"), (form, "V"), (v["f:no"], "NEG")], []
        if spec.neg == "final":
            return [(form, "V")], [(v["f:not"], "NEG")]
        if spec.neg == "suffix":
            return [(form + "me", "V")], []
        return [(v["f:not"], "NEG"), (form, "V")], []

    def event(self, e: Event) -> list[Word]:
        subj = [(e.subj, "NAME")]
        verb, final = self.verb(e.verb, e.neg)
        obj = self.np(e.obj, obj=True)
        place = self.pp(e.place) if e.place else []
        order = self.spec.order
        if order == "SOV":
            words = subj + place + obj + verb + final
        elif order == "VSO":
            words = verb + subj + obj + place + final
        else:
            words = subj + verb + obj + final + place
        return ([(self.v[e.adverb], "ADV")] if e.adverb else []) + words

    def _copular(self, subj: list[Word], pred: list[Word], neg: bool) -> list[Word]:
        v, spec = self.v, self.spec
        negw = [(v["f:not"], "NEG")] if neg else []
        if spec.code == "en":
            return subj + [(v["f:is"], "COP")] + negw + pred
        if spec.copula == "final":
            return subj + pred + negw + [(v["f:is"], "COP")]
        if spec.copula == "none":
            return subj + negw + pred
        if spec.neg == "circum" and neg:
            return subj + [(v["f:not"], "NEG"), (v["f:is"], "COP"), (v["f:no"], "NEG")] + pred
        return subj + negw + [(v["f:is"], "COP")] + pred

    def prop(self, p: Prop) -> list[Word]:
        subj = [(p.subj, "NAME")] if isinstance(p.subj, str) else self.np(p.subj)
        pred = [(self.v[p.adj], "ADJ")] + ([(self.v[p.reading], "NUM")] if p.reading else [])
        return self._copular(subj, pred, p.neg)

    def isa(self, i: Isa) -> list[Word]:
        v = self.v
        kind = [(v["f:kind"], "KIND"), (v["f:of"], "OF"), (v[i.cls], "N")]
        if self.spec.head_final:
            kind = kind[::-1]
        det = [(v["f:a"], "DET")] if self.spec.indef else []
        return self._copular(self.np(NP(i.noun)), det + kind, False)

    def words(self, clause: Clause) -> list[Word]:
        if isinstance(clause, Event):
            return self.event(clause)
        if isinstance(clause, Prop):
            return self.prop(clause)
        return self.isa(clause)

    def sentence(self, clause: Clause) -> str:
        return self.join([w for w, _ in self.words(clause)])

    def join(self, words: list[str]) -> str:
        spec = self.spec
        if spec.spaces:
            text = " ".join(words)
            return f"{text} {spec.period}" if spec.period else text
        return _join_spaceless(words + ([spec.period] if spec.period else []))

    def text(self, clauses: list[Clause]) -> str:
        """Sentences of one document or premise, joined as the language writes them."""
        sentences = [self.sentence(c) for c in clauses]
        return " ".join(sentences) if self.spec.spaces else _join_spaceless(sentences)


def _join_spaceless(parts: list[str]) -> str:
    """Scripts without spaces (th, zh) still set Latin-script names and digits apart, as real text does,
    so that "Nikos" and "31" stay the same tokens as in every other language (shared anchors)."""
    out = ""
    for i, w in enumerate(parts):
        if i and (w[:1].isascii() or parts[i - 1][-1:].isascii()):
            out += " "
        out += w
    return out
