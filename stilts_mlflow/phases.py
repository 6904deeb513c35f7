"""The three STILTs phases and the evaluation, each a cached, resumable MLflow run.

pretrain or a published encoder (pretraining.py) ->
intermediate (English tasks, one shared encoder, heads by name) -> target (English NLI fine-tune) ->
evaluate (zero-shot XNLI test in 15 languages). Each phase's run is tagged with a `stilts.key`
(its resolved config plus its input's key); a finished run with that key is reused, an unfinished
one resumes from the checkpoint in `$STILTS_CACHE/runs/<key>/`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from stilts_mlflow import distributed, tracking
from stilts_mlflow.context import Context, context_for
from stilts_mlflow.data import data_key
from stilts_mlflow.evaluate import evaluate_tasks, report_figure, report_table, zero_shot
from stilts_mlflow.model import HeadSpec, MultiTaskModel
from stilts_mlflow.model_io import build_model, head_for, save_multitask
from stilts_mlflow.options import Options, subset_name
from stilts_mlflow.presets import TrainConfig, key_fields
from stilts_mlflow.phase_training import flat, log_best, train_tracked
from stilts_mlflow.pretraining import initial_encoder
from stilts_mlflow.runcache import PhaseOutput, run_phase
from stilts_mlflow.tasks import task_languages
from stilts_mlflow.train import PhaseResult

log = logging.getLogger(__name__)
ATTEMPTS = "attempts"  # target phase metrics: how many attempts (1 + restarts) it took


def restart_seed(seed: int, attempt: int) -> int:
    """The seed of a target restart: another data order and head initialisation, the same encoder."""
    return seed + 1000 * attempt


def fine_tune_config(tc: TrainConfig, opts: Options) -> TrainConfig:
    """Frozen embeddings and continued MLM keep what pretraining aligned; a random encoder (`pretrain=skip`)
    has nothing to keep, and frozen random embeddings would stop even English from learning."""
    return replace(tc, freeze_embeddings=False, freeze_layers=0, mlm_share=0.0) if opts.pretrain == "skip" else tc


def run_intermediate(opts: Options, ctx: Context, init: str | None, init_key: str) -> PhaseOutput:
    tc = fine_tune_config(ctx.preset.intermediate, opts)
    key = tracking.make_key(
        phase="intermediate",
        init=init_key,
        tasks=sorted(opts.tasks),
        train=key_fields(tc),
        seed=opts.seed,
        sampler=opts.sampler,
        temperature=opts.temperature,
        cap=opts.cap,
        budget=opts.budget,
        mp=opts.mixed_precision,
    )
    subset = subset_name(opts.tasks)

    def body(work: Path, out: Path) -> dict[str, float]:
        for t in opts.tasks:
            tracking.log_inputs(ctx.input_files(t, "train"), "train")
        heads = [head_for(t, ctx) for t in opts.tasks]
        train = {t: ctx.encoded(t, "train") for t in opts.tasks}
        dev = {t: {"en": ctx.encoded(t, "dev", labels=train[t].labels)} for t in opts.tasks}
        if tc.mlm_share > 0:  # continued multilingual MLM (its head comes from pretraining)
            if ctx.preset.pretrain is None:
                raise ValueError(
                    f"preset {ctx.preset.name}: intermediate mlm_share needs the preset's own MLM "
                    "corpus, which only offline presets have"
                )
            tracking.log_inputs(ctx.input_files("mlm", "train"), "train")
            heads.append(HeadSpec("mlm", "mlm"))
            train["mlm"] = ctx.mlm_corpus("train")
        model = build_model(init, heads, ctx, opts.seed)
        if tc.mlm_share > 0:
            ctx.use_mlm_softmax(model, tc)
        result = train_tracked("intermediate", opts, tc, ctx, model, train, dev, work, opts.seed)
        log_best(result)
        save_multitask(model, ctx.tokenizer, out)
        return result.best_metrics

    return run_phase(
        "intermediate",
        key,
        {
            "tasks": ",".join(opts.tasks),
            "seed": opts.seed,
            "sampler": opts.sampler,
            "temperature": opts.temperature,
            "cap": opts.cap,
            "budget": opts.budget,
            **flat("train", asdict(tc)),
        },
        {"preset": ctx.preset.name, "subset": subset, "k": len(opts.tasks), "seed": opts.seed},
        body,
    )


def run_target(opts: Options, ctx: Context, init: str | None, init_key: str) -> PhaseOutput:
    tc = fine_tune_config(ctx.preset.target, opts)
    key = tracking.make_key(
        phase="target", init=init_key, train=key_fields(tc), seed=opts.seed, select=opts.select, mp=opts.mixed_precision
    )

    def body(work: Path, out: Path) -> dict[str, float]:
        tracking.log_inputs(ctx.input_files("xnli", "train"), "train")
        tracking.log_inputs(ctx.input_files("xnli", "dev"), "dev")
        train = {"xnli": ctx.encoded("xnli", "train")}
        dev_all = {"xnli": {lang: ctx.encoded("xnli", "dev", lang) for lang in task_languages("xnli", "dev")}}
        # Strictly zero-shot selection (`select` en) decides on English dev alone: the periodic evaluations
        # score English only (1/15 of the work), the chosen checkpoint then every language.
        dev = dev_all if opts.select == "avg" else {"xnli": {"en": dev_all["xnli"]["en"]}}
        best: PhaseResult | None = None
        for attempt in range(tc.restarts + 1):
            model = build_model(init, [head_for("xnli", ctx)], ctx, restart_seed(opts.seed, attempt))
            # an attempt may give up early (`restart_at`) only while another one follows it
            attempt_tc = tc if attempt < tc.restarts else replace(tc, restart_at=0)
            result = train_tracked(
                "target", opts, attempt_tc, ctx, model, train, dev, work, restart_seed(opts.seed, attempt), attempt
            )
            if dev is not dev_all:  # the model holds the attempt's best weights
                result = replace(
                    result,
                    best_metrics={
                        **result.best_metrics,
                        **evaluate_tasks(
                            model,
                            dev_all,
                            ctx.tokenizer.pad_token_id,
                            ctx.tokenizer.mask_token_id,
                            len(ctx.tokenizer),
                            batch_size=max(32, tc.batch_size),
                            seed=restart_seed(opts.seed, attempt),
                            device=next(model.parameters()).device,
                        ),
                    },
                )
            if best is None or result.best_score > best.best_score:
                best, best_attempt = result, attempt
                model.save_sequence_classification(out, ctx.tokenizer)
            if result.best_score >= tc.stop_above:
                break
            if attempt < tc.restarts:
                log.warning(
                    "target: best dev score %.4f is below %s after %d steps (still on the plateau); "
                    "restart %d of %d with seed %d",
                    result.best_score,
                    tc.stop_above,
                    result.steps,
                    attempt + 1,
                    tc.restarts,
                    restart_seed(opts.seed, attempt + 1),
                )
        log_best(best)
        tracking.log_metrics({"attempts": attempt + 1, "best_attempt": best_attempt})
        return {**best.best_metrics, ATTEMPTS: attempt + 1}

    return run_phase(
        "target",
        key,
        {"seed": opts.seed, "select": opts.select, **flat("train", asdict(tc))},
        {"preset": ctx.preset.name, "seed": opts.seed, "k": len(opts.tasks), "subset": subset_name(opts.tasks)},
        body,
    )


def run_evaluate(opts: Options, ctx: Context, model_dir: str, model_key: str) -> PhaseOutput:
    key = tracking.make_key(phase="evaluate", model=model_key, data=data_key(ctx.preset.data))

    def body(work: Path, out: Path) -> dict[str, float]:
        tracking.log_inputs(ctx.input_files("xnli", "test"), "test")
        model = MultiTaskModel.from_sequence_classification(model_dir)
        sets = {lang: ctx.encoded("xnli", "test", lang) for lang in task_languages("xnli", "test")}
        metrics, confusion = zero_shot(model, sets, ctx.tokenizer)
        tracking.log_metrics(metrics)
        fig = report_figure(
            metrics,
            confusion,
            f"zero-shot XNLI test ({ctx.preset.name}"
            f"{', synthetic world' if ctx.preset.data.source == 'synthetic' else ''})",
        )
        tracking.log_outputs(
            tables={"xnli_test_accuracy.json": report_table(metrics)},
            dicts={"confusion_matrices.json": confusion},
            figures={"xnli_test_accuracy.png": fig},
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "confusion": confusion}, indent=1))
        return metrics

    return run_phase(
        "evaluate",
        key,
        {"model": model_dir},
        {"preset": ctx.preset.name, "seed": opts.seed, "k": len(opts.tasks)},
        body,
    )


def run_through_target(opts: Options, ctx: Context) -> PhaseOutput:
    """pretrain (or XLM-R / random) -> intermediate (if tasks) -> target, each cached."""
    init, init_key = initial_encoder(opts, ctx)
    if opts.tasks:
        mid = run_intermediate(opts, ctx, init, init_key)
        init, init_key = str(mid.path), mid.key
    return run_target(opts, ctx, init, init_key)


def run_pipeline(opts: Options) -> dict[str, Any]:
    """pretrain -> intermediate (if tasks) -> target -> evaluate, as nested runs of the active run."""
    if distributed.is_main():
        ctx = context_for(opts.resolve(), opts.progress)  # builds the data and tokenizer caches once
    distributed.barrier()
    if not distributed.is_main():
        ctx = context_for(opts.resolve(), opts.progress)
    target = run_through_target(opts, ctx)
    ev = run_evaluate(opts, ctx, str(target.path), target.key)
    dev = {f"dev/{k}": v for k, v in target.metrics.items() if k != ATTEMPTS}
    return {
        "target": target,
        "evaluate": ev,
        "metrics": {**dev, "target/attempts": target.metrics.get(ATTEMPTS, 1), **ev.metrics},
    }
