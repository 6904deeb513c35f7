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
            event = Event(person, rng.choice(verb.lemmas), NP(noun, self._adj(rng, cls)),
                          neg=rng.random() < 0.1, place=rng.choice(self.places) if rng.random() < 0.3 else None)
            clauses.append(event)
            r = rng.random()
            if not event.neg and r < 0.35:
                clauses.append(consequence(self.world, self.scripts[verb.sid], event, rng))
            elif r < 0.6:
                clauses.append(Prop(NP(noun, definite=True), self._adj(rng, cls), neg=rng.random() < 0.1))
            elif r < 0.75 and noun.startswith("n:"):
                clauses.append(Isa(noun, f"c:{cls}"))
        return clauses

    def documents(self, lang: str, n: int, seed: int) -> list[str]:
        rng = random.Random(f"corpus-{self.world.seed}-{seed}-{lang}")
        realizer = self.world.realizers[lang]
        sep = " " if realizer.spec.spaces else ""
        return [sep.join(realizer.sentence(c) for c in self.document(rng)) for _ in range(n)]
