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
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from tqdm import tqdm

from stilts_mlflow import tracking
from stilts_mlflow.phases import Options, run_pipeline, subset_name
from stilts_mlflow.scaling import report
from stilts_mlflow.scaling.analysis import Observation, analyse
from stilts_mlflow.scaling.design import StudyDesign

log = logging.getLogger(__name__)
MODEL_NAME = "stilts-xnli"
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


def run_study(design: StudyDesign, base: Options, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) every pipeline of the design inside the active run, then analyse and report."""
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
    log.info("verdict: %s — %s", analysis.verdict, "; ".join(analysis.evidence))
    return {"rows": rows, "analysis": analysis, "reused": reused, "aliases": aliases, "files": files}


def dev_avg(row: dict[str, Any]) -> float:
    return row["metrics"].get("dev/xnli/accuracy.avg", float("nan"))


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


def log_target_model(target_run: str, subset: str) -> str:
    """The target phase's XLMRobertaForSequenceClassification directory as an MLflow LoggedModel of its run
    (MLflow 3 registers logged models); `models:/stilts-xnli@alias` then downloads that directory."""
    client = MlflowClient()
    local = mlflow.artifacts.download_artifacts(run_id=target_run, artifact_path="output")
    model = mlflow.initialize_logged_model(name=f"xnli-{subset}", source_run_id=target_run,
                                           model_type="transformers-xlm-roberta-sequence-classification",
                                           tags={"stilts.subset": subset})
    client.log_model_artifacts(model.model_id, local)
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def register_best(rows: list[dict[str, Any]], preset: str) -> dict[str, str]:
    """Each subset's best pipeline (over seeds, by XNLI dev average) becomes a version of `stilts-xnli`;
    aliases subset-<tasks>, best-k<k> and champion point at the best versions. Returns alias -> version."""
    client = MlflowClient()
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = subset_name(tuple(r["subset"]))
        if name not in best or dev_avg(r) > dev_avg(best[name]):
            best[name] = r
    versions: dict[str, tuple[Any, dict[str, Any]]] = {}
    registered = {v.tags.get("run_id"): v for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    for name, r in sorted(best.items()):
        langs = {k.rsplit(".", 1)[1]: v for k, v in r["metrics"].items() if k.startswith("dev/xnli/accuracy.")}
        tags = {"subset": name, "k": str(r["k"]), "seed": str(r["seed"]), "run_id": r["target_run"],
                "pipeline_run_id": r["run_id"], "preset": preset, "xnli_dev_avg": f"{dev_avg(r):.4f}",
                **{f"dev_{lang}": f"{v:.4f}" for lang, v in langs.items()}}
        mv = registered.get(r["target_run"]) or mlflow.register_model(
            f"models:/{log_target_model(r['target_run'], name)}", MODEL_NAME, tags=tags)
        versions[name] = (mv, r)
    aliases = {}
    for name, (mv, _) in versions.items():
        aliases[f"subset-{name}"] = mv.version
    for k in sorted({r["k"] for _, r in versions.values()}):
        mv, _ = max((v for v in versions.values() if v[1]["k"] == k), key=lambda v: dev_avg(v[1]))
        aliases[f"best-k{k}"] = mv.version
    mv, _ = max(versions.values(), key=lambda v: dev_avg(v[1]))
    aliases["champion"] = mv.version
    for alias, version in aliases.items():
        client.set_registered_model_alias(MODEL_NAME, alias, version)
    return aliases
