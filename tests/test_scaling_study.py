"""End-to-end: the scaling study on the smoke preset — child runs, report, registry aliases, cache reuse."""

import json

import mlflow
import pytest
from mlflow import MlflowClient
from transformers import AutoModelForSequenceClassification

from test_pipeline import by_phase, runs, stilts

STUDY = ["scaling", "--preset", "smoke", "--sizes", "0-3", "--subsets-per-size", "1", "--no-progress"]
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
    assert {"report/report.md", "report/report.html", "report/summary.json", "report/curve.png",
            "report/marginal_gains.png", "report/k_by_language.png", "report/task_attribution.png"} <= report
    summary = json.loads((tmp_path / "scaling_report" / "summary.json").read_text())
    assert summary["synthetic"] is True and set(summary["curve"]) == {"0", "1", "2", "3"}
    assert len(summary["runs"]) == 12 and all(r["run_id"] for r in summary["runs"])

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

    # the same study again: every pipeline reused, no training run started, identical summary
    trained = len([r for r in all_runs if r.data.tags.get("stilts.phase") in TRAINING])
    second = stilts(STUDY, tmp_path, cache)
    assert "pipelines: 12 (12 reused)" in second.stdout, second.stdout
    again = runs(tmp_path)
    assert len([r for r in again if r.data.tags.get("stilts.phase") in TRAINING]) == trained
    assert len(by_phase(again, "pipeline")) == 12
    assert len(client.search_model_versions("name='stilts-xnli'")) == 12
    rerun = json.loads((tmp_path / "scaling_report" / "summary.json").read_text())
    assert rerun["curve"] == summary["curve"] and rerun["verdict"] == summary["verdict"]
