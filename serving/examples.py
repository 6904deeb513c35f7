"""Labelled spot-check pairs shipped inside an export: `examples.json`, listed in checksums.json.

`stilts export` writes a small fixed sample of the XNLI test split the model was evaluated on (gold label
included) for every language; GET /v1/examples draws from it and the page at GET / scores the draw. This
module is the file's one definition: `dump` (export side), `parse` (server side, a clear IntegrityError
for anything malformed) and `draw`. Exports made before the file existed still serve, without examples.

    {"format": "stilts-examples/1", "split": "test", "preset": "tiny", "synthetic": true, "seed": 0,
     "examples": {"en": [{"premise": "...", "hypothesis": "...", "label": "entailment"}, ...], ...}}
"""

from __future__ import annotations

import json
import random
from pathlib import Path

EXAMPLES_FILE = "examples.json"
FORMAT = "stilts-examples/1"


class ExamplesError(ValueError):
    """examples.json is malformed (raised as the engine's IntegrityError by the loader)."""


def dump(examples: dict[str, list[dict]], *, preset: str, synthetic: bool, seed: int, split: str = "test") -> bytes:
    """The file's bytes: languages in the given order, each a list of {premise, hypothesis, label}."""
    return json.dumps(
        {
            "format": FORMAT,
            "split": split,
            "preset": preset,
            "synthetic": synthetic,
            "seed": seed,
            "examples": examples,
        },
        ensure_ascii=False,
        indent=1,
    ).encode("utf-8")


def parse(data: bytes, path: Path, labels: tuple[str, ...]) -> dict:
    """The file's object after checking every field the server uses; gold labels must be the model's."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ExamplesError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ExamplesError(f"{path}: expected an object with format {FORMAT!r}")
    if not isinstance(obj.get("synthetic"), bool):
        raise ExamplesError(f"{path}: field 'synthetic' must be true or false")
    examples = obj.get("examples")
    if not isinstance(examples, dict) or not examples:
        raise ExamplesError(f"{path}: field 'examples' must be a non-empty object of language -> pairs")
    for lang, rows in examples.items():
        if not isinstance(rows, list) or not rows:
            raise ExamplesError(f"{path}: examples.{lang} must be a non-empty list")
        for i, row in enumerate(rows):
            if not (
                isinstance(row, dict)
                and all(isinstance(row.get(k), str) and row[k].strip() for k in ("premise", "hypothesis"))
            ):
                raise ExamplesError(f"{path}: examples.{lang}.{i} needs non-empty premise and hypothesis strings")
            if row.get("label") not in labels:
                raise ExamplesError(
                    f"{path}: examples.{lang}.{i}.label is {row.get('label')!r}, not one of the "
                    f"model's labels {', '.join(labels)}"
                )
    return obj


def summary(obj: dict | None) -> dict | None:
    """What GET /v1/model says about the examples: where they come from and how many per language."""
    if obj is None:
        return None
    return {
        "split": obj.get("split"),
        "preset": obj.get("preset"),
        "synthetic": obj["synthetic"],
        "per_language": {lang: len(rows) for lang, rows in obj["examples"].items()},
    }


def draw(obj: dict, lang: str, n: int, seed: int) -> list[dict]:
    """`n` distinct pairs of `lang` (or of every language pooled, for "all"), the same for the same seed."""
    pool = [(code, row) for code, rows in obj["examples"].items() if lang in ("all", code) for row in rows]
    return [
        {"lang": code, "premise": row["premise"], "hypothesis": row["hypothesis"], "label": row["label"]}
        for code, row in random.Random(seed).sample(pool, n)
    ]
