"""The spot-check sample an export carries (`examples.json`, see serving/examples.py): a fixed, seeded
sample of labelled pairs per language from the XNLI test split the model was evaluated on, read through the
same loader as evaluation (synthetic presets: the materialized data cache; real presets: XNLI's test pairs).
"""

from __future__ import annotations

import random
from functools import lru_cache

PER_LANGUAGE = 20
SEED = 0

Rows = dict[str, list[tuple[str, str, str]]]


def xnli_test(preset: str) -> Rows:
    """The preset's XNLI test set per language as (premise, hypothesis, label)."""
    from stilts_mlflow.context import xnli_rows

    return xnli_rows(preset, "test")


def select(test: Rows, per_language: int = PER_LANGUAGE, seed: int = SEED) -> dict[str, list[dict]]:
    """`per_language` pairs of each language, the labels as even as the split allows: each label's rows are
    shuffled with the seed, then taken in turn (entailment, neutral, contradiction, entailment, ...)."""
    out = {}
    for lang, rows in test.items():
        rng = random.Random(f"{seed}-{lang}")
        by_label: dict[str, list] = {}
        for row in rows:
            by_label.setdefault(row[2], []).append(row)
        queues = [rng.sample(group, len(group)) for _, group in sorted(by_label.items())]
        picked = []
        while len(picked) < per_language and any(queues):
            for queue in queues:
                if queue and len(picked) < per_language:
                    picked.append(queue.pop())
        out[lang] = [{"premise": a, "hypothesis": b, "label": label} for a, b, label in picked]
    return out


@lru_cache(maxsize=4)
def for_preset(preset: str, per_language: int = PER_LANGUAGE, seed: int = SEED) -> dict:
    """What `export_model(examples=...)` takes: the selected pairs and where they come from."""
    from stilts_mlflow.presets import get_preset

    return {
        "examples": select(xnli_test(preset), per_language, seed),
        "preset": preset,
        "seed": seed,
        "synthetic": get_preset(preset).data.source == "synthetic",
    }
