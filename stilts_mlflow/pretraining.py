"""Where a pipeline's encoder comes from: the shipped `stilts-mini-xlmr`, XLM-R, a random one, or the
pretrain phase (MLM on the preset's synthetic corpus), cached like every phase."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from stilts_mlflow import published, tracking
from stilts_mlflow.context import Context
from stilts_mlflow.data import data_key
from stilts_mlflow.model import HeadSpec
from stilts_mlflow.model_io import build_model
from stilts_mlflow.options import Options
from stilts_mlflow.phase_training import flat, log_best, train_tracked
from stilts_mlflow.presets import Preset, key_fields
from stilts_mlflow.runcache import PhaseOutput, run_phase
from stilts_mlflow.tasks import task_languages
from stilts_mlflow.tokenizer import TOKENIZER_VERSION


def pretrain_key(opts: Options, preset: Preset) -> str:
    return tracking.make_key(
        phase="pretrain",
        data=data_key(preset.data),
        tokenizer=TOKENIZER_VERSION,
        model=key_fields(preset.model),
        train=key_fields(preset.pretrain),
        seed=opts.pretrain_seed,
        mp=opts.mixed_precision,
    )


def run_pretrain(opts: Options, ctx: Context) -> PhaseOutput:
    preset = ctx.preset
    if preset.pretrain is None:
        raise ValueError(f"preset {preset.name} starts from {preset.model.pretrained}; it has no pretrain phase")
    key = pretrain_key(opts, preset)

    def body(work: Path, out: Path) -> dict[str, float]:
        tracking.log_inputs(ctx.input_files("mlm", "train"), "train")
        model = build_model(None, [HeadSpec("mlm", "mlm")], ctx, opts.pretrain_seed)
        ctx.use_mlm_softmax(model, preset.pretrain)
        train = {"mlm": ctx.mlm_corpus("train")}
        dev = {"mlm": {lang: ctx.encoded("mlm", "dev", lang) for lang in task_languages("mlm", "dev")}}
        start = time.monotonic()
        result = train_tracked("pretrain", opts, preset.pretrain, ctx, model, train, dev, work, opts.pretrain_seed)
        log_best(result)
        model.to_masked_lm().save_pretrained(str(out), safe_serialization=True)
        ctx.tokenizer.save_pretrained(str(out))
        return {"mlm_loss": result.best_metrics["mlm/loss"], "steps": result.steps, "seconds": time.monotonic() - start}

    return run_phase(
        "pretrain",
        key,
        {
            "preset": preset.name,
            "seed": opts.pretrain_seed,
            **flat("train", asdict(preset.pretrain)),
            **flat("model", asdict(preset.model)),
        },
        {"preset": preset.name, "seed": opts.pretrain_seed},
        body,
    )


def initial_encoder(opts: Options, ctx: Context) -> tuple[str | None, str]:
    """(init for build_model, lineage key): pretrained here, XLM-R from the hub/dir, or random."""
    preset = ctx.preset
    if opts.pretrain == "skip":
        return None, tracking.make_key(random=True, model=key_fields(preset.model), data=data_key(preset.data))
    if preset.model.init == "pretrained" and preset.model.pretrained.startswith(published.PREFIX):
        return published_encoder(preset)
    if preset.model.init == "pretrained":
        return preset.model.pretrained, tracking.make_key(pretrained=preset.model.pretrained)
    out = run_pretrain(opts, ctx)
    return str(out.path), out.key


_VERIFIED: set[str] = set()


def published_encoder(preset: Preset) -> tuple[str, str]:
    """The shipped encoder (verified once per process: files against the manifest's sha256, the world against
    the generator's fingerprint), registered as `stilts-mini-xlmr` on first use; the active run records which
    version it started from."""
    directory = published.path(preset.model.pretrained)
    if str(directory) not in _VERIFIED:
        published.verify(directory, preset.data)
        _VERIFIED.add(str(directory))
    if tracking.in_run():
        tracking.set_tag("encoder", published.register(directory))
    return str(directory), tracking.make_key(published=published.lineage_key(directory))
