"""The allowed values of every user-facing choice, in one place: click's choices, the dataclasses' checks and
MLproject's documentation read them from here (tests/test_entry_points.py checks the defaults agree)."""

from __future__ import annotations

SOURCES: tuple[str, ...] = ("synthetic", "hub", "local")  # where a preset's data come from
PRETRAIN: tuple[str, ...] = ("auto", "train", "skip")  # the published/pretrained encoder, pretrain here, random
BUDGETS: tuple[str, ...] = ("fixed", "per-task")  # intermediate steps: the same for any k, or steps x tasks
SELECT: tuple[str, ...] = ("en", "avg")  # target checkpoint selection: English dev, or the 15-language average
MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")
BACKENDS: tuple[str, ...] = ("in-process", "local", "kubernetes", "ray")  # where a study's child pipelines run
