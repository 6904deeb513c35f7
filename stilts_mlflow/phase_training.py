"""One tracked training run of a phase: its dev curve and checkpoints go to the active MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stilts_mlflow import checkpoint_store, tracking
from stilts_mlflow.context import Context
from stilts_mlflow.features import Encoded
from stilts_mlflow.model import MultiTaskModel
from stilts_mlflow.options import Options
from stilts_mlflow.train import PhaseConfig, PhaseResult, train_phase


def train_tracked(
    phase: str,
    opts: Options,
    tc,
    ctx: Context,
    model: MultiTaskModel,
    train: dict[str, Encoded],
    dev: dict[str, dict[str, Encoded]],
    work: Path,
    seed: int,
    attempt: int = 0,
) -> PhaseResult:
    """One training run of a phase, its dev curve and checkpoints tracked (a restart's under `restart<n>/`)."""
    cfg = PhaseConfig(
        phase,
        tc,
        seed=seed,
        sampler=opts.sampler,
        temperature=opts.temperature,
        cap=opts.cap,
        budget=opts.budget,
        select=opts.select,
        mixed_precision=opts.mixed_precision,
    )
    prefix, label = (f"restart{attempt}/", f"{phase}-restart{attempt}") if attempt else ("", phase)
    result = train_phase(
        cfg,
        model,
        train,
        dev,
        ctx.tokenizer,
        work / (f"train-restart{attempt}" if attempt else "train"),
        on_metrics=lambda m, step: tracking.log_metrics(
            {prefix + (f"dev/{k}" if "/" in k and not k.startswith("train/") else k): v for k, v in m.items()}, step
        ),
        on_checkpoint=checkpoint_store.CheckpointLogger(label),
        progress=opts.progress,
    )
    if attempt:
        tracking.log_metrics({f"{prefix}best_step": result.best_step, f"{prefix}best_score": result.best_score})
    return result


def log_best(result: PhaseResult) -> None:
    tracking.log_metrics({"best_step": result.best_step, "steps": result.steps, "best_score": result.best_score})
    tracking.log_metrics({f"best/{k}": v for k, v in result.best_metrics.items()})


def flat(prefix: str, d: dict) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}
