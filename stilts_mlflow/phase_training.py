"""One tracked training run of a phase: its dev curve and checkpoints go to the active MLflow run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from stilts_mlflow import checkpoint_store, tracking
from stilts_mlflow.context import Context
from stilts_mlflow.features import Encoded
from stilts_mlflow.model import MultiTaskModel
from stilts_mlflow.neighbours import neighbour_table
from stilts_mlflow.options import Options
from stilts_mlflow.train import PhaseConfig, PhaseResult, train_phase

log = logging.getLogger(__name__)


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
    neighbours = None
    if tc.neighbour_swap > 0:  # from the starting weights, before a resumed checkpoint replaces them
        neighbours = neighbour_table(
            model.roberta.embeddings.word_embeddings.weight, ctx.mlm_vocab, ctx.tokenizer.mask_token_id
        )
        moved = (neighbours != torch.arange(neighbours.shape[1])).sum(dim=1).float()
        log.info(
            "%s: neighbour swaps at %.0f%% of word types; %.0f English tokens have a mutual neighbour per language",
            phase,
            100 * tc.neighbour_swap,
            moved.mean().item(),
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
        neighbours=neighbours,
    )
    if attempt:
        tracking.log_metrics({f"{prefix}best_step": result.best_step, f"{prefix}best_score": result.best_score})
    return result


def log_best(result: PhaseResult) -> None:
    tracking.log_metrics({"best_step": result.best_step, "steps": result.steps, "best_score": result.best_score})
    tracking.log_metrics({f"best/{k}": v for k, v in result.best_metrics.items()})


def flat(prefix: str, d: dict) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}
