"""A study's child: one pipeline as an MLflow run, keyed by its options and the recipe they resolve to, so any
backend (pool, Kubernetes, a plain `stilts pipeline`) finds and reuses a finished one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow

from stilts_mlflow import tracking
from stilts_mlflow.options import Options, subset_name
from stilts_mlflow.phases import run_pipeline
from stilts_mlflow.presets import key_fields

RESULT_FILE = "pipeline_result.json"


def child_key(opts: Options) -> str:
    """The options and the preset they resolve to: a changed recipe (steps, learning rates, data) is a new
    child, never a stale reuse of one trained on the old recipe."""
    return tracking.make_key(
        kind="pipeline", options=key_fields(replace(opts, progress=True)), preset=key_fields(opts.resolve())
    )


def child_row(opts: Options, run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "subset": list(opts.tasks),
        "k": len(opts.tasks),
        "seed": opts.seed,
        "run_id": run_id,
        "target_run": result["target"].run_id,
        "metrics": result["metrics"],
    }


def record_child(opts: Options, run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Inside the child's own run: its key and result row, which the study reads back (any backend)."""
    row = child_row(opts, run_id, result)
    tracking.log_metrics(result["metrics"])
    mlflow.set_tags({tracking.TAG + "key": child_key(opts), "stilts.target_run": result["target"].run_id})
    mlflow.log_dict(row, RESULT_FILE)
    return row


def finished_child(opts: Options) -> dict[str, Any] | None:
    """The row of a finished child pipeline with these options, if there is one."""
    done = tracking.find_run(child_key(opts))
    if done is None:
        return None
    path = mlflow.artifacts.download_artifacts(run_id=done.info.run_id, artifact_path=RESULT_FILE)
    return json.loads(Path(path).read_text())


def run_child(
    opts: Options, parent_id: str | None = None, extra_tags: dict[str, str] | None = None
) -> tuple[dict[str, Any], bool]:
    """One pipeline as a child run of the active run, or of run `parent_id` (run in a worker process or on a
    cluster node, which `extra_tags` may name); reused when a finished one has the same key."""
    row = finished_child(opts)
    if row is not None:
        return row, True
    subset = subset_name(opts.tasks)
    tags = {
        "phase": "pipeline",
        "preset": opts.preset,
        "subset": subset,
        "k": len(opts.tasks),
        "seed": opts.seed,
        **(extra_tags or {}),
    }
    with tracking.start(
        f"pipeline k={len(opts.tasks)} {subset} seed={opts.seed}",
        tags,
        key=child_key(opts),
        nested=parent_id is None,
        parent_id=parent_id,
    ) as run:
        row = record_child(opts, run.info.run_id, run_pipeline(opts))
    return row, False
