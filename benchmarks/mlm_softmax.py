"""MLM pretraining speed: the language softmax (mlm.py) vs the full softmax over the whole vocabulary.

The same loop (stilts_mlflow.train.train_phase), the tiny preset's model, batch, learning rate and masking,
on the 15-language corpus, from the same initial weights; only `mlm_softmax` differs. Each repeat runs both,
taking turns to go first; timed from the call to the end of the last optimizer step, medians compared.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.training import seconds_to_last_step
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.phases import mlm_corpus, use_mlm_softmax
from stilts_mlflow.train import PhaseConfig

log = logging.getLogger(__name__)
SOFTMAXES = ("full", "language")


def _seconds(ctx, softmax: str, steps: int, work: Path) -> float:
    tc = replace(ctx.preset.pretrain, steps=steps, eval_every=steps, checkpoint_every=steps, mlm_softmax=softmax)
    torch.manual_seed(0)
    model = MultiTaskModel(encoder_config(ctx.preset.model, len(ctx.tokenizer)), [HeadSpec("mlm", "mlm")])
    use_mlm_softmax(model, tc, ctx)
    return seconds_to_last_step(
        PhaseConfig("pretrain", tc),
        model,
        {"mlm": mlm_corpus(ctx, "train")},
        {"mlm": {"en": ctx.encoded("mlm", "dev", "en")}},
        ctx.tokenizer,
        work,
    )


def run(ctx, quick: bool) -> dict:
    steps, repeats = (50, 1) if quick else (300, 3)
    seconds: dict[str, list[float]] = {s: [] for s in SOFTMAXES}
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for softmax in SOFTMAXES if repeat % 2 == 0 else SOFTMAXES[::-1]:
                seconds[softmax].append(_seconds(ctx, softmax, steps, Path(tmp) / softmax))
    pc = ctx.preset.pretrain
    out: dict = {
        "steps": steps,
        "batch_size": pc.batch_size,
        "mlm_probability": pc.mlm_probability,
        "vocab": len(ctx.tokenizer),
        "repeats": repeats,
    }
    for softmax, times in seconds.items():
        out[softmax] = {
            "seconds": round(statistics.median(times), 3),
            "seconds_per_repeat": [round(t, 3) for t in times],
            "steps_per_s": round(steps / statistics.median(times), 2),
        }
    out["speedup"] = round(out["full"]["seconds"] / out["language"]["seconds"], 3)
    out["speedup_per_repeat"] = [round(f / lang, 3) for f, lang in zip(seconds["full"], seconds["language"])]
    log.info(
        "mlm softmax: full %.1f steps/s, language %.1f steps/s (x%.2f, repeats %s)",
        out["full"]["steps_per_s"],
        out["language"]["steps_per_s"],
        out["speedup"],
        out["speedup_per_repeat"],
    )
    return out
