"""Running the study: one `pipeline` child run per (subset, seed) under the `scaling` parent run, the
analysis and report logged to the parent, and each subset's best model registered.

Every phase is cached by its `stilts.key` (phases.py), and every child pipeline by the key of its
options: a finished child is reused as is, so rerunning the study recomputes nothing and an
interrupted study continues where it stopped (an unfinished phase resumes from its checkpoint).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from tqdm import tqdm

from stilts_mlflow import tracking
from stilts_mlflow.phases import Options, run_pipeline, subset_name
from stilts_mlflow.registry import dev_avg, export_registered, register_best
from stilts_mlflow.scaling import report
from stilts_mlflow.scaling.analysis import Observation, analyse
from stilts_mlflow.scaling.design import StudyDesign

log = logging.getLogger(__name__)
RESULT_FILE = "pipeline_result.json"


def child_key(opts: Options) -> str:
    return tracking.make_key(kind="pipeline", options=asdict(replace(opts, progress=True)))


def run_child(opts: Options) -> tuple[dict[str, Any], bool]:
    """One pipeline as a nested run (reused when a finished one has the same key)."""
    key = child_key(opts)
    done = tracking.find_run(key)
    if done is not None:
        path = mlflow.artifacts.download_artifacts(run_id=done.info.run_id, artifact_path=RESULT_FILE)
        return json.loads(Path(path).read_text()), True
    subset = subset_name(opts.tasks)
    tags = {"phase": "pipeline", "preset": opts.preset, "subset": subset, "k": len(opts.tasks), "seed": opts.seed}
    with tracking.start(f"pipeline k={len(opts.tasks)} {subset} seed={opts.seed}", tags, key=key) as run:
        result = run_pipeline(opts)
        tracking.log_metrics(result["metrics"])
        row = {"subset": list(opts.tasks), "k": len(opts.tasks), "seed": opts.seed, "run_id": run.info.run_id,
               "target_run": result["target"].run_id, "metrics": result["metrics"]}
        mlflow.set_tag("stilts.target_run", result["target"].run_id)
        mlflow.log_dict(row, RESULT_FILE)
    return row, False


def run_study(design: StudyDesign, base: Options, out_dir: Path, progress: bool = True,
              export: bool = True) -> dict[str, Any]:
    """Run (or reuse) every pipeline of the design inside the active run, then analyse, report, register
    each subset's best and (with `export`) give every registered version its ONNX twin."""
    runs = design.runs()
    rows, reused = [], 0
    start = time.monotonic()
    with tqdm(total=len(runs), desc="study", unit="pipeline", disable=not progress) as bar:
        for subset, seed in runs:
            row, was_reused = run_child(replace(base, tasks=subset, seed=seed, progress=False))
            rows.append(row)
            reused += was_reused
            log.info("pipeline %d/%d k=%d %s seed %d: XNLI test avg %.4f, dev avg %.4f%s", len(rows), len(runs),
                     row["k"], subset_name(subset), seed, row["metrics"]["test/accuracy.avg"], dev_avg(row),
                     " (reused)" if was_reused else "")
            bar.update(1)
    observations = [Observation(tuple(r["subset"]), r["seed"], r["metrics"]["test/accuracy.avg"]) for r in rows]
    analysis = analyse(observations)
    per_language = language_means(rows)
    synthetic = base.resolve().data.source == "synthetic"
    title = f"STILTs scaling study ({base.preset}{', synthetic world' if synthetic else ''})"
    files = report.write(analysis, per_language, [_run_summary(r) for r in rows], out_dir, title, synthetic)
    for name, path in files.items():
        mlflow.log_artifact(str(path), artifact_path="report")
    mlflow.log_metrics({"study/pipelines": len(rows), "study/reused": reused,
                        "study/seconds": time.monotonic() - start,
                        **{f"study/mean_k{k}": c.mean for k, c in analysis.curve.items()}})
    mlflow.set_tag("stilts.verdict", analysis.verdict)
    aliases = register_best(rows, base.preset)
    onnx_aliases = export_registered(base.preset) if export else {}
    log.info("verdict: %s — %s", analysis.verdict, "; ".join(analysis.evidence))
    return {"rows": rows, "analysis": analysis, "reused": reused, "aliases": aliases,
            "onnx_aliases": onnx_aliases, "files": files}


def language_means(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    by_k: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for name, value in r["metrics"].items():
            if name.startswith("test/accuracy.") and name.count(".") == 1:
                lang = name.split(".", 1)[1]
                if lang not in ("avg", "non_en_avg"):
                    by_k[r["k"]][lang].append(value)
    return {k: {lang: float(np.mean(v)) for lang, v in langs.items()} for k, langs in sorted(by_k.items())}


def _run_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"subset": row["subset"], "k": row["k"], "seed": row["seed"], "run_id": row["run_id"],
            "target_run": row["target_run"], "xnli_test_avg": row["metrics"]["test/accuracy.avg"],
            "xnli_dev_avg": dev_avg(row)}
