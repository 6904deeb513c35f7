"""The synthetic multilingual world: lexicon, 15 languages, grammar and sentence generators."""

from __future__ import annotations

from functools import cached_property

from stilts_mlflow.world.grammar import NP, Clause, Event, Isa, Prop, Realizer
from stilts_mlflow.world.languages import LANGUAGES, XNLI_LANGUAGES, build_vocabulary
from stilts_mlflow.world.lexicon import NAMES, Lexicon, build_lexicon

WORLD_VERSION = "8"

__all__ = ["NP", "Clause", "Event", "Isa", "Prop", "World", "WORLD_VERSION", "XNLI_LANGUAGES", "LANGUAGES", "NAMES"]


class World:
    """One seeded world: the same seed and WORLD_VERSION give byte-identical sentences."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.lexicon: Lexicon = build_lexicon(seed)

    @cached_property
    def noun_groups(self) -> dict[str, str]:
        return {s.sid: s.group for s in self.lexicon.senses.values() if s.pos in ("noun", "class")}

    @cached_property
    def realizers(self) -> dict[str, Realizer]:
        return {
            code: Realizer(build_vocabulary(self.lexicon, code, self.seed), self.noun_groups) for code in XNLI_LANGUAGES
        }

    def sentence(self, clause: Clause, lang: str = "en") -> str:
        return self.realizers[lang].sentence(clause)

    def alphabet(self) -> list[str]:
        """Every character the world can write (so a tokenizer never needs <unk> on it)."""
        chars = set("0123456789.?,;:!-'" + "".join(NAMES) + "ال" + "yуюыйаяеёиоъ")
        for r in self.realizers.values():
            chars.update("".join(r.v.forms.values()) + r.spec.period)
        return sorted(chars - {" "})

    def english(self, key: str) -> str:
        return self.realizers["en"].v[key]
