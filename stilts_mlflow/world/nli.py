"""NLI pairs whose labels follow from word meaning, with shortcut cues balanced across labels.

A premise is an event (NAME VERB a ADJ NOUN). The hypothesis changes one or two of the allowed slots, each by a
lexical relation: synonym (=), hypernym (⊏, dog → animal), hyponym (⊐), antonym or sibling (|,
exclusion), or an unrelated word (#). Labels follow natural-logic joins under the caption-style
convention that both sentences describe one event: any exclusion → contradiction; only = and ⊏ →
entailment; otherwise neutral.

The surface form varies as real NLI text does, independently of the label (`styled`): definite or
indefinite objects, a leading adverb, a place, the property stated in its own copular sentence
("Maria buys a dog . the dog is big ."), a copular hypothesis ("the dog is large ."), an adverb in the
hypothesis. With one fixed template an English-only classifier can compare word positions instead of
words, which no other word order shares; varied English makes it find the property words by what
they are.

Shortcuts are removed by stratified sampling: examples are grouped by a *signature* (which slots
changed, whether the premise and hypothesis nouns are class words, which premise clause the
hypothesis is about) and every group keeps the same number of each label. No overlap count,
changed position, class-word cue or length can then predict the label; only word meaning can.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, replace

from stilts_mlflow.world import NAMES, NP, Clause, Event, Prop, World
from stilts_mlflow.world.lexicon import Sense

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
SLOTS: tuple[str, ...] = ("verb", "adj", "noun")
ADVERBS: tuple[str, ...] = ("f:now", "f:then")  # the leading adverbs an Event may carry


@dataclass(frozen=True)
class NLIPair:
    premise: tuple[Event, ...]
    hypothesis: Event
    label: str
    signature: tuple


def join_label(relations: list[str]) -> str:
    if "|" in relations:
        return "contradiction"
    if all(r in ("=", "⊏") for r in relations):
        return "entailment"
    return "neutral"


class NLIGenerator:
    def __init__(self, world: World):
        self.world = world
        lex = world.lexicon
        self.verbs = lex.of_pos("verb")
        self.adjs = lex.of_pos("adj")
        self.classes = sorted({s.group for s in lex.of_pos("noun")})
        self.places = [s.sid for s in lex.of_pos("place")]

    # --- sampling the premise -----------------------------------------------------------------
    def event(self, rng: random.Random, subj: str | None = None, place: bool = False) -> Event:
        """Verb, noun and adjective drawn independently: selectional preferences shape the MLM
        corpus, but NLI must not let a typical or odd combination reveal the label."""
        lex = self.world.lexicon
        verb = rng.choice(self.verbs)
        cls = rng.choice(self.classes)
        noun = f"c:{cls}" if rng.random() < 0.5 else rng.choice(lex.members(cls))
        adj_sense = rng.choice(self.adjs)
        return Event(
            subj or rng.choice(NAMES),
            rng.choice(verb.lemmas),
            NP(noun, rng.choice(adj_sense.lemmas)),
            place=rng.choice(self.places) if place else None,
        )

    # --- one-slot perturbations ---------------------------------------------------------------
    def _other_lemma(self, rng: random.Random, sense: Sense, lemma: str) -> str:
        return rng.choice([x for x in sense.lemmas if x != lemma])

    def _word_op(self, rng: random.Random, lemma: str, pool: list[Sense]) -> tuple[str, str]:
        """Synonym, antonym or an unrelated word (uniformly: typicality must not reveal the label)."""
        lex = self.world.lexicon
        sense = lex.sense_of(lemma)
        op = rng.choice(("syn", "ant", "other"))
        if op == "syn":
            return self._other_lemma(rng, sense, lemma), "="
        if op == "ant":
            return rng.choice(lex.senses[sense.antonym].lemmas), "|"
        others = [s for s in pool if s.group != sense.group]
        other = rng.choice(others)
        return rng.choice(other.lemmas), "#"

    def _noun_op(self, rng: random.Random, noun: str) -> tuple[str, str]:
        lex = self.world.lexicon
        cls = self.world.noun_groups[noun]
        other_cls = rng.choice([c for c in self.classes if c != cls])
        other = f"c:{other_cls}" if rng.random() < 0.5 else rng.choice(lex.members(other_cls))
        if noun.startswith("c:"):
            return (rng.choice(lex.members(cls)), "⊐") if rng.random() < 0.5 else (other, "|")
        op = rng.choice(("up", "sibling", "other"))
        if op == "up":
            return f"c:{cls}", "⊏"
        if op == "sibling":
            return rng.choice([m for m in lex.members(cls) if m != noun]), "|"
        return other, "|"

    def perturb(
        self, rng: random.Random, e: Event, slots: tuple[str, ...] = SLOTS
    ) -> tuple[Event, list[str], tuple[str, ...]]:
        """Change one slot of `slots`, or two (40%) when more than one is allowed."""
        changed = tuple(sorted(rng.sample(slots, 1 if len(slots) == 1 or rng.random() < 0.6 else 2)))
        relations = []
        verb, adj, noun = e.verb, e.obj.adj, e.obj.noun
        if "verb" in changed:
            verb, rel = self._word_op(rng, verb, self.verbs)
            relations.append(rel)
        if "adj" in changed:
            adj, rel = self._word_op(rng, adj, self.adjs)
            relations.append(rel)
        if "noun" in changed:
            noun, rel = self._noun_op(rng, noun)
            relations.append(rel)
        return replace(e, verb=verb, obj=NP(noun, adj, e.obj.definite)), relations, changed

    # --- balanced data sets -------------------------------------------------------------------
    def candidate(self, rng: random.Random, distractor: bool, place: bool, slots: tuple[str, ...] = SLOTS) -> NLIPair:
        first = self.event(rng, place=place)
        premise = (first,)
        about = 0
        if distractor:
            second = self.event(rng, subj=rng.choice([n for n in NAMES if n != first.subj]), place=place)
            premise = (first, second)
            about = rng.randrange(2)
        target = premise[about]
        hyp, relations, changed = self.perturb(rng, target, slots)
        kinds = (target.obj.noun[0], hyp.obj.noun[0])
        return NLIPair(premise, hyp, join_label(relations), (changed, kinds, about))

    def generate(
        self, n: int, rng: random.Random, distractor: bool = False, place: bool = False, slots: tuple[str, ...] = SLOTS
    ) -> list[NLIPair]:
        """n pairs (a multiple of 3 is best), labels equally frequent inside every signature group."""
        groups: dict[tuple, dict[str, list[NLIPair]]] = defaultdict(lambda: {lab: [] for lab in NLI_LABELS})
        triples: list[tuple[NLIPair, ...]] = []
        seen: set[tuple] = set()
        while len(triples) * 3 < n:
            pair = self.candidate(rng, distractor, place, slots)
            key = (pair.premise, pair.hypothesis)
            if key in seen:
                continue
            seen.add(key)
            bucket = groups[pair.signature]
            bucket[pair.label].append(pair)
            if all(bucket[lab] for lab in NLI_LABELS):
                triples.append(tuple(bucket[lab].pop(0) for lab in NLI_LABELS))
        rng.shuffle(triples)
        out = [p for t in triples for p in t][:n]
        rng.shuffle(out)
        return out


def styled(pair: NLIPair, rng: random.Random, places: list[str]) -> tuple[list[Clause], Clause]:
    """The pair's premise and hypothesis in one of several surface forms; the logic (and label) is
    unchanged: the hypothesis still says the premise's object has the hypothesis property."""
    premise = list(pair.premise)
    about = pair.signature[2]
    e, h = premise[about], pair.hypothesis
    if rng.random() < 0.5:
        e, h = replace(e, obj=replace(e.obj, definite=True)), replace(h, obj=replace(h.obj, definite=True))
    form = rng.randrange(4)
    target: list[Clause] = [e]
    if form == 1:
        target = [replace(e, obj=NP(e.obj.noun, None, e.obj.definite)), Prop(NP(e.obj.noun, definite=True), e.obj.adj)]
    elif form == 2:
        target = [replace(e, adverb=rng.choice(ADVERBS))]
    elif form == 3 and e.place is None:
        target = [replace(e, place=rng.choice(places))]
    premise[about : about + 1] = target
    kind = rng.randrange(3)
    hypothesis: Clause = (
        Prop(NP(h.obj.noun, definite=True), h.obj.adj)
        if kind == 0
        else replace(h, adverb=rng.choice(ADVERBS))
        if kind == 1
        else h
    )
    return premise, hypothesis
