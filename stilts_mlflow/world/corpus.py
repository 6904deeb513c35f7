"""Unlabeled multilingual documents for masked-LM pretraining, and the world's event scripts.

Each language gets its own documents from its own random stream: no sentence is a translation of
another. What the languages share is the *structure* of the world: which verbs and adjectives go
with which noun classes, which class a noun belongs to, and what follows an event (its script).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stilts_mlflow.world import NAMES, NP, Clause, Event, Isa, Prop, World

# What an event leads to: whether the subject then owns the object, and how the subject feels.
MEASURE = 0.8  # share of property sentences that carry the property's reading
RESTATE = 0.6  # share of property sentences restated by a synonym or a denied antonym
_OWNERSHIP = {"trade:0": True, "trade:1": False, "keep:0": True, "keep:1": False, "lend:0": True, "lend:1": False}


@dataclass(frozen=True)
class Script:
    owns: bool | None  # subject owns the object afterwards (None: unchanged)
    state: str  # person-state sense the subject is in afterwards


def scripts(world: World) -> dict[str, Script]:
    rng = random.Random(f"scripts-{world.seed}")
    states = [s.sid for s in world.lexicon.of_pos("state")]
    out = {}
    for sense in world.lexicon.of_pos("verb"):
        key = sense.sid.split(":", 1)[1]
        out[sense.sid] = Script(_OWNERSHIP.get(key), rng.choice(states))
    return out


def measures(world: World) -> dict[str, str]:
    """A reading for each property, written right after it as people note them ("the soup is hot 371 ."):
    the leading digits name the dimension, the last digit the pole (1 or 9). Numbers are the same tokens in
    every language, so predicting them ties each language's property words to shared anchors."""
    rng = random.Random(f"measures-{world.seed}")
    dims = sorted({s.group for s in world.lexicon.of_pos("adj")})
    tens = rng.sample(range(10, 100), len(dims))
    out = {}
    for sense in world.lexicon.of_pos("adj"):
        pole = 0 if sense.sid < sense.antonym else 1
        out[sense.sid] = f"#:{tens[dims.index(sense.group)]}{9 if pole else 1}"
    return out


def consequence(world: World, script: Script, e: Event, rng: random.Random) -> Clause:
    """A sentence that follows from the event by the world's script."""
    if script.owns is not None and rng.random() < 0.5:
        return Event(e.subj, "f:owns", NP(e.obj.noun, definite=True), neg=not script.owns, adverb="f:now")
    return Prop(e.subj, rng.choice(world.lexicon.senses[script.state].lemmas))


class CorpusGenerator:
    """Documents of 3-6 sentences about one or two people."""

    def __init__(self, world: World):
        self.world = world
        lex = world.lexicon
        self.verbs = lex.of_pos("verb")
        self.adjs = lex.of_pos("adj")
        self.places = [s.sid for s in lex.of_pos("place")]
        self.scripts = scripts(world)
        self.measures = measures(world)

    def _noun(self, rng: random.Random, classes: tuple[str, ...]) -> tuple[str, str]:
        lex = self.world.lexicon
        cls = rng.choice(classes) if rng.random() < 0.85 else rng.choice(sorted({s.group for s in lex.of_pos("noun")}))
        return cls, (f"c:{cls}" if rng.random() < 0.2 else rng.choice(lex.members(cls)))

    def _adj(self, rng: random.Random, cls: str) -> str:
        typical = [a for a in self.adjs if cls in a.classes]
        sense = rng.choice(typical) if typical and rng.random() < 0.85 else rng.choice(self.adjs)
        return rng.choice(sense.lemmas)

    def document(self, rng: random.Random) -> list[Clause]:
        people = rng.sample(NAMES, 2)
        clauses: list[Clause] = []
        for _ in range(rng.randint(2, 4)):
            person = rng.choice(people)
            verb = rng.choice(self.verbs)
            cls, noun = self._noun(rng, verb.classes)
            event = Event(
                person,
                rng.choice(verb.lemmas),
                NP(noun, self._adj(rng, cls)),
                neg=rng.random() < 0.1,
                place=rng.choice(self.places) if rng.random() < 0.3 else None,
            )
            clauses.append(event)
            r = rng.random()
            if not event.neg and r < 0.2:
                clauses.append(consequence(self.world, self.scripts[verb.sid], event, rng))
            elif r < 0.75:
                adj = self._adj(rng, cls)
                if rng.random() < RESTATE:
                    clauses.extend(self.restatement(rng, noun, adj))
                else:
                    clauses.append(Prop(NP(noun, definite=True), adj, neg=rng.random() < 0.1))
                last = clauses[-1]
                if rng.random() < MEASURE and not last.neg:
                    clauses[-1] = Prop(
                        last.subj, last.adj, reading=self.measures[self.world.lexicon.sense_of(last.adj).sid]
                    )
            elif r < 0.85 and noun.startswith("n:"):
                clauses.append(Isa(noun, f"c:{cls}"))
        return clauses

    def restatement(self, rng: random.Random, noun: str, adj: str) -> list[Clause]:
        """How people restate a property: by a synonym ("the cup is clean . the cup is spotless"), or
        by denying its opposite ("the cup is not dirty . the cup is clean"). The same in every language,
        these make MLM itself compute word relations in the shared layers."""
        lex = self.world.lexicon
        sense = lex.sense_of(adj)
        subject = NP(noun, definite=True)
        if rng.random() < 0.5:
            other = rng.choice([x for x in sense.lemmas if x != adj] or [adj])
            return [Prop(subject, adj), Prop(subject, other)]
        opposite = rng.choice(lex.senses[sense.antonym].lemmas)
        return [Prop(subject, opposite, neg=True), Prop(subject, adj)]

    def documents(self, lang: str, n: int, seed: int) -> list[str]:
        rng = random.Random(f"corpus-{self.world.seed}-{seed}-{lang}")
        realizer = self.world.realizers[lang]
        return [realizer.text(self.document(rng)) for _ in range(n)]
