"""Running the study: one `pipeline` child run per (subset, seed) under the `scaling` parent run, the
analysis and report logged to the parent, and each subset's best model registered.

Every phase is cached by its `stilts.key` (runcache.py), and every child pipeline by the key of its
options: a finished child is reused as is, so rerunning the study recomputes nothing and an
interrupted study continues where it stopped (an unfinished phase resumes from its checkpoint).
Children run in this process (or its worker pool: workers.py), through MLflow project backends (local,
kubernetes: launch.py), or as tasks on a Ray cluster (ray_backend.py).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from tqdm import tqdm

from stilts_mlflow.context import context_for
from stilts_mlflow.options import Options, subset_name
from stilts_mlflow.pretraining import initial_encoder
from stilts_mlflow.process_pool import cores
from stilts_mlflow.registry import dev_avg, export_registered, register_best
from stilts_mlflow.scaling import report
from stilts_mlflow.scaling.analysis import Observation, analyse
from stilts_mlflow.scaling.children import finished_child, run_child
from stilts_mlflow.scaling.design import StudyDesign
from stilts_mlflow.scaling.launch import LaunchConfig, child_threads, run_submitted
from stilts_mlflow.scaling.simulate import for_study
from stilts_mlflow.scaling.workers import run_pooled
from stilts_mlflow.transfer import accuracies

log = logging.getLogger(__name__)


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
            elif launch.backend == "ray":
                from stilts_mlflow.scaling.ray_backend import run_on_ray  # Ray is an optional extra

                run_on_ray(
                    pending, launch.backend_config, launch.max_parallel, parent, lambda i, row: done(i, row, False)
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
    power = {  # nan (not estimable) left out
        f"study/mde_{name}": analysis.power[name]
        for name in ("slope", "curvature")
        if analysis.power.get(name) == analysis.power.get(name)
    }
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
    # the exports share this machine's cores as the pipelines did (remote backends' workers are elsewhere)
    onnx_aliases = export_registered(base.preset, workers=min(launch.max_parallel, cores())) if export else {}
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
        "xnli_test": accuracies(row["metrics"]),  # per language: the noise model reads these
    }
