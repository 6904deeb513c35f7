"""Running the study: one `pipeline` child run per (subset, seed) under the `scaling` parent run, the
analysis and report logged to the parent, and each subset's best model registered.

Every phase is cached by its `stilts.key` (phases.py), and every child pipeline by the key of its
options: a finished child is reused as is, so rerunning the study recomputes nothing and an
interrupted study continues where it stopped (an unfinished phase resumes from its checkpoint).
Children run in this process, or through MLflow project backends (local, kubernetes: launch.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from tqdm import tqdm

from stilts_mlflow import tracking
from stilts_mlflow.phases import Options, context_for, initial_encoder, run_pipeline, subset_name
from stilts_mlflow.presets import key_fields
from stilts_mlflow.registry import dev_avg, export_registered, register_best
from stilts_mlflow.scaling import report
from stilts_mlflow.scaling.analysis import Observation, analyse
from stilts_mlflow.scaling.design import StudyDesign
from stilts_mlflow.scaling.launch import LaunchConfig, child_threads, run_submitted
from stilts_mlflow.scaling.simulate import for_study
from stilts_mlflow.scaling.workers import run_pooled
from stilts_mlflow.transfer import accuracies

log = logging.getLogger(__name__)
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


def run_child(opts: Options, parent_id: str | None = None) -> tuple[dict[str, Any], bool]:
    """One pipeline as a child run of the active run, or of run `parent_id` (run in a worker process); reused
    when a finished one has the same key."""
    row = finished_child(opts)
    if row is not None:
        return row, True
    subset = subset_name(opts.tasks)
    tags = {"phase": "pipeline", "preset": opts.preset, "subset": subset, "k": len(opts.tasks), "seed": opts.seed}
    with tracking.start(
        f"pipeline k={len(opts.tasks)} {subset} seed={opts.seed}",
        tags,
        key=child_key(opts),
        nested=parent_id is None,
        parent_id=parent_id,
    ) as run:
        row = record_child(opts, run.info.run_id, run_pipeline(opts))
    return row, False


def child_options(design: StudyDesign, base: Options) -> list[Options]:
    """The options of each child pipeline of the design, in design order."""
    return [replace(base, tasks=subset, seed=seed, progress=False) for subset, seed in design.runs()]


def _children(
    design: StudyDesign, base: Options, launch: LaunchConfig, progress: bool
) -> tuple[list[dict[str, Any]], int]:
    """Every child's row in design order, finished ones reused, the rest run on `launch`'s backend."""
    options = child_options(design, base)
    rows: list[dict[str, Any] | None] = [None] * len(options)
    reused = 0
    with tqdm(total=len(options), desc="study", unit="pipeline", disable=not progress) as bar:

        def done(i: int, row: dict[str, Any], was_reused: bool) -> None:
            rows[i] = row
            log.info(
                "pipeline %d/%d k=%d %s seed %d: XNLI test avg %.4f, dev avg %.4f%s",
                i + 1,
                len(options),
                row["k"],
                subset_name(tuple(row["subset"])),
                row["seed"],
                row["metrics"]["test/accuracy.avg"],
                dev_avg(row),
                " (reused)" if was_reused else "",
            )
            bar.update(1)

        if launch.backend == "in-process" and launch.max_parallel == 1:
            for i, opts in enumerate(options):
                row, was_reused = run_child(opts)
                reused += was_reused
                done(i, row, was_reused)
        else:
            pending = []
            for i, opts in enumerate(options):
                row = finished_child(opts)
                if row is None:
                    pending.append((i, opts))
                else:
                    reused += 1
                    done(i, row, True)
            if pending and base.pretrain != "skip":  # shared: pretrained or registered here, not in each child
                initial_encoder(base, context_for(base.resolve(), base.progress))
            parent = mlflow.active_run().info.run_id
            if launch.backend == "in-process":
                run_pooled(
                    pending,
                    launch.max_parallel,
                    child_threads(launch.max_parallel),
                    parent,
                    lambda i, row: done(i, row, False),
                )
            else:
                run_submitted(pending, launch, parent, finished_child, lambda i, row: done(i, row, False))
    return [r for r in rows if r is not None], reused


def run_study(
    design: StudyDesign,
    base: Options,
    out_dir: Path,
    progress: bool = True,
    export: bool = True,
    launch: LaunchConfig = LaunchConfig(),
) -> dict[str, Any]:
    """Run (or reuse) every pipeline of the design (on `launch`'s backend), then analyse, report, register
    each subset's best and (with `export`) give every registered version its ONNX twin."""
    start = time.monotonic()
    rows, reused = _children(design, base, launch, progress)
    observations = [Observation(tuple(r["subset"]), r["seed"], r["metrics"]["test/accuracy.avg"]) for r in rows]
    analysis = analyse(observations)
    per_language = language_means(rows)
    synthetic = base.resolve().data.source == "synthetic"
    title = f"STILTs scaling study ({base.preset}{', synthetic world' if synthetic else ''})"
    runs = [_run_summary(r) for r in rows]
    calibration = for_study(design, runs)
    files = report.write(analysis, per_language, runs, out_dir, title, synthetic, calibration)
    for name, path in files.items():
        mlflow.log_artifact(str(path), artifact_path="report")
    power = {
        f"study/mde_{name}": analysis.power[name]
        for name in ("slope", "curvature")
        if analysis.power.get(name) == analysis.power.get(name)
    }  # nan (not estimable) left out
    if calibration is not None:
        power["study/calibration_false_positive"] = calibration.to_dict()["false_positive_any"]
    mlflow.log_metrics(
        {
            "study/pipelines": len(rows),
            "study/reused": reused,
            "study/seconds": time.monotonic() - start,
            **power,
            **{f"study/mean_k{k}": c.mean for k, c in analysis.curve.items()},
        }
    )
    mlflow.set_tag("stilts.verdict", analysis.verdict)
    aliases = register_best(rows, base.preset)
    onnx_aliases = export_registered(base.preset) if export else {}
    log.info("verdict: %s — %s", analysis.verdict, "; ".join(analysis.evidence))
    return {
        "rows": rows,
        "analysis": analysis,
        "reused": reused,
        "aliases": aliases,
        "onnx_aliases": onnx_aliases,
        "files": files,
    }


def language_means(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    by_k: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for lang, value in accuracies(r["metrics"]).items():
            by_k[r["k"]][lang].append(value)
    return {k: {lang: float(np.mean(v)) for lang, v in langs.items()} for k, langs in sorted(by_k.items())}


def _run_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "subset": row["subset"],
        "k": row["k"],
        "seed": row["seed"],
        "run_id": row["run_id"],
        "target_run": row["target_run"],
        "xnli_test_avg": row["metrics"]["test/accuracy.avg"],
        "xnli_dev_avg": dev_avg(row),
        "target_attempts": int(row["metrics"].get("target/attempts", 1)),
        "xnli_test": accuracies(row["metrics"]),
    }  # per language: the noise model reads these
