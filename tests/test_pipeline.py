"""End-to-end: the smoke pipeline through the CLI, MLflow runs/tags/inputs/models, cache reuse,
resume after SIGKILL, the xlmr presets' from_pretrained path, and parameter errors."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from safetensors.torch import load_file

from helpers import GIVING_UP, RESTARTING, by_phase, outputs, runs, stilts

PIPELINE = ["pipeline", "--preset", "smoke", "--tasks", "mnli,squad,ccg", "--no-progress"]


@pytest.mark.slow
def test_pipeline_tracks_everything_and_reuses_finished_phases(tmp_path):
    cache = tmp_path / "cache"
    first = stilts(PIPELINE, tmp_path, cache)
    assert "zero-shot XNLI test accuracy: en" in first.stdout
    all_runs = runs(tmp_path)
    pipe = by_phase(all_runs, "pipeline")
    assert len(pipe) == 1
    phases = {p: by_phase(all_runs, p) for p in ("pretrain", "intermediate", "target", "evaluate")}
    assert all(len(v) == 1 for v in phases.values()), {p: len(v) for p, v in phases.items()}
    for p, (run,) in phases.items():
        assert run.data.tags["mlflow.parentRunId"] == pipe[0].info.run_id, p
        assert run.info.status == "FINISHED" and run.data.tags["stilts.key"]
    inter = phases["intermediate"][0]
    assert inter.data.tags["stilts.subset"] == "ccg-mnli-squad" and inter.data.tags["stilts.k"] == "3"
    assert {"dev/mnli/accuracy", "dev/squad/f1", "dev/ccg/accuracy", "train/loss"} <= set(inter.data.metrics)
    # continued multilingual MLM (smoke: mlm_share 0.2) trained the MLM head pretraining handed over
    assert inter.data.params["train.mlm_share"] == "0.2"
    # both MLM phases score masked tokens against their own language's tokens (mlm.py), and say so
    assert (
        inter.data.params["train.mlm_softmax"] == phases["pretrain"][0].data.params["train.mlm_softmax"] == "language"
    )
    client = mlflow.MlflowClient()
    assert {"mlm-train-en", "mlm-train-sw"} <= {
        d.dataset.name for d in client.get_run(inter.info.run_id).inputs.dataset_inputs
    }
    inter_out = cache / "runs" / inter.data.tags["stilts.key"] / "output"
    pre_out = cache / "runs" / phases["pretrain"][0].data.tags["stilts.key"] / "output"
    assert {"name": "mlm", "kind": "mlm", "num_labels": 0} in json.loads((inter_out / "heads.json").read_text())
    mlm_bias = load_file(str(inter_out / "model.safetensors"))["heads.mlm.decoder.bias"]  # the bias the head uses
    assert not torch.equal(mlm_bias, load_file(str(pre_out / "model.safetensors"))["lm_head.bias"])
    ev = phases["evaluate"][0]
    langs = ["en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur"]
    assert {f"test/accuracy_{x}" for x in langs + ["avg", "non_en_avg"]} | {"test/en_gap"} <= set(ev.data.metrics)
    assert pipe[0].data.metrics["test/accuracy_avg"] == ev.data.metrics["test/accuracy_avg"]
    artifacts = {a.path for a in client.list_artifacts(ev.info.run_id)}
    assert {"xnli_test_accuracy.png", "xnli_test_accuracy.json", "confusion_matrices.json"} <= artifacts
    confusion = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=ev.info.run_id, artifact_path="confusion_matrices.json")
        ).read_text()
    )
    assert sorted(confusion) == sorted(langs) and sum(map(sum, confusion["fr"])) == 24
    # dataset inputs and checkpoints as logged models with their step
    target = phases["target"][0]
    inputs = client.get_run(target.info.run_id).inputs.dataset_inputs
    assert {"xnli-train-en", "xnli-dev-fr"} <= {d.dataset.name for d in inputs}
    models = mlflow.search_logged_models(experiment_ids=[target.info.experiment_id], output_format="list")
    steps = sorted(int(m.tags["step"]) for m in models if m.source_run_id == target.info.run_id)
    assert steps == [6, 12]
    # strictly zero-shot selection (select en): the periodic dev evaluations score English only, the chosen
    # checkpoint every language
    assert [m.step for m in client.get_metric_history(target.info.run_id, "dev/xnli/accuracy_en")] == [6, 12]
    assert not client.get_metric_history(target.info.run_id, "dev/xnli/accuracy_fr")
    assert {f"best/xnli/accuracy_{x}" for x in langs + ["avg", "non_en_avg"]} <= set(target.data.metrics)
    assert pipe[0].data.metrics["dev/xnli/accuracy_avg"] == target.data.metrics["best/xnli/accuracy_avg"]
    # the target model is a transformers sequence-classification directory
    from transformers import AutoModelForSequenceClassification

    out = cache / "runs" / target.data.tags["stilts.key"] / "output"
    clf = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert clf.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}

    second = stilts(PIPELINE, tmp_path, cache)  # everything cached: no phase is retrained
    assert second.stdout == first.stdout
    assert "reusing finished run" in second.stderr
    all_runs = runs(tmp_path)
    assert len(by_phase(all_runs, "pipeline")) == 2
    assert all(len(by_phase(all_runs, p)) == 1 for p in phases)

    # evaluating the saved target directory on its own gives the pipeline's numbers
    alone = stilts(["evaluate", "--preset", "smoke", "--model-dir", str(out), "--no-progress"], tmp_path, cache)
    assert alone.stdout == first.stdout


@pytest.mark.slow
@pytest.mark.parametrize("phase, step", [("pretrain", 17), ("intermediate", 8), ("target", 9)])
def test_sigkill_then_rerun_resumes_to_the_same_result(tmp_path, phase, step):
    args = ["pipeline", "--preset", "smoke", "--tasks", "mnli,squad", "--no-progress"]
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    clean.mkdir()
    broken.mkdir()
    stilts(args, clean, clean / "cache")
    killed = stilts(args, broken, broken / "cache", {"STILTS_FAULT_KILL_AT": f"{phase}:{step}"}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    interrupted = [r for r in by_phase(runs(broken), phase) if r.info.status == "RUNNING"]
    assert len(interrupted) == 1
    resumed = stilts(args, broken, broken / "cache")
    assert "resuming from step" in resumed.stderr
    assert resumed.stdout == stilts(args, clean, clean / "cache").stdout
    # same run continued, and bit-identical weights and test metrics
    again = by_phase(runs(broken), phase)
    assert len(again) == 1 and again[0].info.run_id == interrupted[0].info.run_id
    assert again[0].info.status == "FINISHED"
    a, b = outputs(clean / "cache"), outputs(broken / "cache")
    assert a.keys() == b.keys() and len(a) == 3
    for phase_name, files in a.items():
        for fname, tensors in files.items():
            assert all((tensors[n] == b[phase_name][fname][n]).all() for n in tensors), (phase_name, fname)
    (m1,), (m2,) = [list((c / "cache").glob("runs/*/output/metrics.json")) for c in (clean, broken)]
    assert json.loads(m1.read_text()) == json.loads(m2.read_text())


@pytest.mark.slow
def test_target_restarts_keep_the_best_attempt_and_resume_after_sigkill(tmp_path):
    args = ["pipeline", "--preset", "smoke", "--no-progress"]
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    clean.mkdir()
    broken.mkdir()
    first = stilts(args, clean, clean / "cache", prelude=RESTARTING)
    assert "restart 1 of 1 with seed 1000" in first.stderr
    (target,) = by_phase(runs(clean), "target")
    m = target.data.metrics
    assert m["attempts"] == 2 and m["best_attempt"] in (0, 1)
    client = mlflow.MlflowClient()
    for prefix in ("", "restart1/"):
        curve = client.get_metric_history(target.info.run_id, f"{prefix}dev/xnli/accuracy_en")
        assert sorted(x.step for x in curve) == [6, 12], prefix
    # the kept attempt is the better one by English dev, and its numbers are the phase's
    (state1,) = (clean / "cache").glob("runs/*/train-restart1/last/trainer_state.json")
    state0 = state1.parents[2] / "train" / "last" / "trainer_state.json"
    scores = [json.loads(f.read_text())["best_score"] for f in (state0, state1)]
    assert m["best_score"] == max(scores) and m["best_attempt"] == scores.index(max(scores))
    assert json.loads(state1.read_text())["config"]["seed"] == 1000
    names = {
        lm.name for lm in mlflow.search_logged_models(experiment_ids=[target.info.experiment_id], output_format="list")
    }
    assert {"target-step12", "target-restart1-step12"} <= names
    # the rerun of the finished pipeline reuses it: no third attempt
    assert "restart" not in stilts(args, clean, clean / "cache", prelude=RESTARTING).stderr

    # SIGKILL inside the restart (the second target run of the process), rerun: same result as uninterrupted
    killed = stilts(
        args, broken, broken / "cache", {"STILTS_FAULT_KILL_AT": "target:9#2"}, check=False, prelude=RESTARTING
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = stilts(args, broken, broken / "cache", prelude=RESTARTING)
    assert "resuming from step 6" in resumed.stderr
    assert resumed.stdout == first.stdout
    (again,) = by_phase(runs(broken), "target")
    assert again.data.metrics["attempts"] == 2 and again.info.status == "FINISHED"


@pytest.mark.slow
def test_an_attempt_still_on_its_plateau_at_restart_at_gives_up_and_the_last_attempt_runs_on(tmp_path):
    result = stilts(["pipeline", "--preset", "smoke", "--no-progress"], tmp_path, tmp_path / "cache", prelude=GIVING_UP)
    assert "giving up this attempt" in result.stderr and "restart 1 of 1 with seed 1000" in result.stderr
    (target,) = by_phase(runs(tmp_path), "target")
    assert target.data.metrics["attempts"] == 2
    client = mlflow.MlflowClient()
    steps = {
        prefix: sorted(x.step for x in client.get_metric_history(target.info.run_id, f"{prefix}dev/xnli/accuracy_en"))
        for prefix in ("", "restart1/")
    }
    assert steps == {"": [6], "restart1/": [6, 12]}


@pytest.mark.slow
def test_xlmr_preset_goes_through_from_pretrained(tmp_path):
    """A tiny XLMRobertaForMaskedLM saved with save_pretrained stands in for the hub's XLM-R."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    cache = tmp_path / "cache"
    data = tmp_path / "data"
    stilts(["data", "export", "--preset", "smoke", "--out", str(data)], tmp_path, cache)
    tok_dir = tmp_path / "xlmr-fixture"
    stilts(["data", "tokenizer", "--preset", "smoke", "--out", str(tok_dir)], tmp_path, cache)
    from stilts_mlflow.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    cfg = XLMRobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    XLMRobertaForMaskedLM(cfg).save_pretrained(str(tok_dir))
    proc = stilts(
        [
            "pipeline",
            "--preset",
            "xlmr-base",
            "--source",
            "local",
            "--data-dir",
            str(data),
            "--pretrained",
            str(tok_dir),
            "--tasks",
            "mnli",
            "--no-progress",
        ],
        tmp_path,
        cache,
    )
    assert "zero-shot XNLI test accuracy: en" in proc.stdout
    all_runs = runs(tmp_path)
    assert not by_phase(all_runs, "pretrain")  # XLM-R is phase 1 already
    (inter,) = by_phase(all_runs, "intermediate")
    (target,) = by_phase(all_runs, "target")
    # xlmr-base recipe: 3 epochs of 96 mnli examples at batch 8 x 4; 2 epochs of 192 xnli examples
    assert inter.data.metrics["steps"] == 9 and target.data.metrics["steps"] == 12
    assert inter.data.params["train.learning_rate"] == "1e-05"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "mnli,boolq"], "Error: unknown intermediate task(s) boolq; allowed: anli, mnli, qqp"),
        (["--preset", "huge"], "Invalid value for '--preset'"),
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--sampler", "capped"], "Error: sampler=capped needs cap > 0"),
        (["--temperature", "0"], "Error: temperature must be > 0"),
    ],
)
def test_bad_parameters_give_one_clear_line(tmp_path, args, message):
    proc = stilts(["pipeline", *args], tmp_path, tmp_path / "cache", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def mlflow_run(entry_point: str, params: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`mlflow run` of this project (local env manager) in `cwd`, with `-P` parameters `params`."""
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        STILTS_CACHE=str(cwd / "cache"),
        MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    )
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "run",
            str(repo),
            "-e",
            entry_point,
            *[a for p in params for a in ("-P", p)],
            "--env-manager",
            "local",
            "--experiment-name",
            "stilts-xnli",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_mlflow_run_entry_point(tmp_path):
    """`mlflow run . -e pipeline` runs the CLI inside the run mlflow made, phases nested under it."""
    proc = mlflow_run("pipeline", ["preset=smoke", "tasks=mnli,squad"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    (pipe,) = by_phase(all_runs, "pipeline")
    assert pipe.data.tags["mlflow.project.entryPoint"] == "pipeline" and pipe.info.status == "FINISHED"
    assert pipe.data.params["tasks"] == "mnli,squad"
    for phase in ("pretrain", "intermediate", "target", "evaluate"):
        (run,) = by_phase(all_runs, phase)
        assert run.data.tags["mlflow.parentRunId"] == pipe.info.run_id


@pytest.mark.slow
def test_mlflow_run_scaling_entry_point_with_its_defaults(tmp_path):
    """`mlflow run . -e scaling` as the README runs it: the entry point's own defaults (in-process backend,
    max_parallel auto), which `mlflow run` logs as parameters of the run the study then logs into."""
    proc = mlflow_run("scaling", ["preset=smoke", "sizes=0", "seeds=0,1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_runs = runs(tmp_path)
    (study,) = by_phase(all_runs, "scaling")
    assert study.data.tags["mlflow.project.entryPoint"] == "scaling" and study.info.status == "FINISHED"
    assert study.data.params["max_parallel"] == "auto" and int(study.data.params["parallel"]) >= 1
    children = by_phase(all_runs, "pipeline")
    assert len(children) == 2 and {c.data.tags["mlflow.parentRunId"] for c in children} == {study.info.run_id}


def test_a_pipeline_with_neighbour_swaps_builds_its_table_from_the_mlm_corpus(tmp_path):
    """The target phase reads each language's tokens off the MLM corpus and the encoder's embeddings, and
    reports how many English tokens found a mutual neighbour."""
    prelude = """import dataclasses, stilts_mlflow.presets as p
s = p.PRESETS["smoke"]
p.PRESETS["smoke"] = dataclasses.replace(s, target=dataclasses.replace(s.target, neighbour_swap=0.3))"""
    result = stilts(["pipeline", "--preset", "smoke", "--no-progress"], tmp_path, tmp_path / "cache", prelude=prelude)
    line = next(x for x in result.stderr.splitlines() if "neighbour swaps at 30% of word types" in x)
    assert float(line.split("; ")[1].split()[0]) > 0, line
    (target,) = by_phase(runs(tmp_path), "target")
    assert target.data.params["train.neighbour_swap"] == "0.3" and target.data.metrics["steps"] == 12
