"""End-to-end: the scaling study on the smoke preset — child runs, report, registry aliases, cache reuse."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from transformers import AutoModelForSequenceClassification

from stilts_mlflow.export import PARITY_TOLERANCE
from helpers import by_phase, runs, stilts

STUDY = [
    "scaling",
    "--preset",
    "smoke",
    "--sizes",
    "0-3",
    "--subsets-per-size",
    "1",
    "--max-parallel",
    "2",
    "--no-progress",
]
TRAINING = ("pretrain", "intermediate", "target")


@pytest.mark.slow
def test_scaling_study_reports_registers_and_reuses(tmp_path):
    cache = tmp_path / "cache"
    first = stilts(STUDY, tmp_path, cache)
    assert "pipelines: 12 (0 reused)" in first.stdout, first.stdout  # k=0: 1, k=1: all 9, k=2: 1, k=3: 1
    assert "verdict:" in first.stdout
    all_runs = runs(tmp_path)
    (parent,) = by_phase(all_runs, "scaling")
    children = by_phase(all_runs, "pipeline")
    assert len(children) == 12
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["stilts.k"] for c in children} == {"0", "1", "2", "3"}
    assert parent.data.tags["stilts.subset"] == "study" and parent.data.tags["stilts.k"] == "0-3"
    assert parent.data.tags["stilts.verdict"] in ("diminishing", "accelerating", "steady", "declining", "inconclusive")
    assert parent.data.metrics["study/pipelines"] == 12
    report = {f.path for f in MlflowClient().list_artifacts(parent.info.run_id, "report")}
    assert {
        "report/report.md",
        "report/report.html",
        "report/summary.json",
        "report/curve.png",
        "report/marginal_gains.png",
        "report/k_by_language.png",
        "report/task_attribution.png",
    } <= report
    summary = json.loads((tmp_path / "scaling_report" / "summary.json").read_text())
    assert summary["synthetic"] is True and set(summary["curve"]) == {"0", "1", "2", "3"}
    assert len(summary["runs"]) == 12 and all(r["run_id"] for r in summary["runs"])
    assert all(r["target_attempts"] == 1 for r in summary["runs"])  # smoke has no target restarts
    assert "0 of 12 target phases stayed on the plateau" in (tmp_path / "scaling_report" / "report.md").read_text()

    # registry: one version per subset, aliases for subsets, sizes and the champion; transformers loads them
    client = MlflowClient()
    versions = client.search_model_versions("name='stilts-xnli'")
    assert len(versions) == 12
    assert {v.tags["subset"] for v in versions} >= {"none", "mnli", "ccg"}
    for alias in ("champion", "best-k1", "best-k0", "subset-none", "subset-mnli"):
        mv = client.get_model_version_by_alias("stilts-xnli", alias)
        assert mv.tags["preset"] == "smoke" and float(mv.tags["xnli_dev_avg"]) >= 0
    for alias in ("champion", "best-k1"):
        path = mlflow.artifacts.download_artifacts(f"models:/stilts-xnli@{alias}")
        model = AutoModelForSequenceClassification.from_pretrained(path)
        assert model.config.id2label[0] == "entailment"
    best_k1 = client.get_model_version_by_alias("stilts-xnli", "best-k1")
    assert best_k1.tags["k"] == "1"

    # every version has an ONNX twin with its tags, export checks and checksums; aliases mirrored
    twins = client.search_model_versions("name='stilts-xnli-onnx'")
    # exported on 2 worker processes, registered here in source order: twin n is version n's
    assert {str(t.version): t.tags["source_version"] for t in twins} == {
        str(v.version): str(v.version) for v in versions
    }
    exports = by_phase(all_runs, "export")
    assert len(exports) == 12 and {e.data.tags["mlflow.parentRunId"] for e in exports} == {parent.info.run_id}
    assert {e.info.run_id for e in exports} == {t.tags["export_run_id"] for t in twins}
    assert "12 ONNX exports on 2 worker processes" in first.stderr, first.stderr[-3000:]
    source_aliases = client.get_registered_model("stilts-xnli").aliases
    twin_aliases = client.get_registered_model("stilts-xnli-onnx").aliases
    assert set(twin_aliases) == set(source_aliases)
    for alias, version in twin_aliases.items():
        twin = client.get_model_version("stilts-xnli-onnx", version)
        source = client.get_model_version("stilts-xnli", source_aliases[alias])
        assert twin.tags["source_version"] == str(source.version) and twin.tags["subset"] == source.tags["subset"]
        assert float(twin.tags["parity_max_abs_diff.fp32"]) <= PARITY_TOLERANCE and "dev.int8.accuracy.avg" in twin.tags
        assert len(twin.tags["sha256.model.int8.onnx"]) == 64
    # the export command on a registry alias finds the study's twin instead of exporting again
    again_export = stilts(["export", "--model-uri", "models:/stilts-xnli@champion"], tmp_path, cache)
    champion_twin = twin_aliases["champion"]
    assert f"-> stilts-xnli-onnx v{champion_twin}; aliases" in again_export.stdout, again_export.stdout
    assert "parity_max_abs_diff.fp32:" in again_export.stdout
    assert len(client.search_model_versions("name='stilts-xnli-onnx'")) == len(twins)
    champion = mlflow.pyfunc.load_model("models:/stilts-xnli-onnx@champion")
    frame = pd.DataFrame(
        {
            "premise": ["Tom buys a big dog .", "Nadia 买了一只大狗。", "Omar يشتري كلبا كبيرا ."],
            "hypothesis": ["Tom buys a little dog .", "Nadia 买了一只狗。", "Omar يشتري كلبا ."],
        }
    )
    assert list(champion.predict(frame)["label"].isin(["entailment", "neutral", "contradiction"])) == [True] * 3
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "predict",
            "-m",
            "models:/stilts-xnli-onnx@champion",
            "--env-manager",
            "local",
            "-t",
            "json",
            "-i",
            str(_write_input(tmp_path / "input.json", frame)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
    )
    assert served.returncode == 0, served.stderr[-2000:]
    predictions = json.loads(served.stdout[served.stdout.index("{") :])["predictions"]
    assert len(predictions) == 3 and {"label", "p_entailment"} <= set(predictions[0])

    # the same study again: every pipeline reused, no training run started, identical summary
    trained = len([r for r in all_runs if r.data.tags.get("stilts.phase") in TRAINING])
    second = stilts(STUDY, tmp_path, cache)
    assert "pipelines: 12 (12 reused)" in second.stdout, second.stdout
    again = runs(tmp_path)
    assert len([r for r in again if r.data.tags.get("stilts.phase") in TRAINING]) == trained
    assert len(by_phase(again, "pipeline")) == 12
    assert len(client.search_model_versions("name='stilts-xnli'")) == 12
    assert len(client.search_model_versions("name='stilts-xnli-onnx'")) == 12
    assert len(by_phase(again, "export")) == len(twins)  # twins reused: no export run added
    rerun = json.loads((tmp_path / "scaling_report" / "summary.json").read_text())
    assert rerun["curve"] == summary["curve"] and rerun["verdict"] == summary["verdict"]


def _write_input(path: Path, frame: pd.DataFrame) -> Path:
    path.write_text(json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}))
    return path
