"""The model card GET /v1/model answers: which export serves (registry name, version, alias or directory),
its languages and labels, subset and preset, dev accuracy per language, export checks, shipped examples."""

from __future__ import annotations

from serving import examples
from serving.engine import NLIEngine


def model_info(engine: NLIEngine, tags: dict[str, str] | None = None, **extra) -> dict:
    """The card of `engine`, from its registry tags (when it came from the registry) and `extra` fields."""
    tags = tags or {}
    dev = {k.removeprefix("dev_"): float(v) for k, v in tags.items() if k.startswith("dev_")}
    return {
        **extra,
        "variant": engine.variant,
        "labels": list(engine.labels),
        "languages": engine.meta.get("languages", []),
        "max_length": engine.max_length,
        "subset": tags.get("subset"),
        "k": tags.get("k"),
        "preset": tags.get("preset"),
        "dev_accuracy": dev,
        "synthetic": (engine.examples or {}).get("synthetic"),
        "examples": examples.summary(engine.examples),
        "export": {k: v for k, v in tags.items() if k.startswith(("parity", "dev.", "int8"))},
    }
