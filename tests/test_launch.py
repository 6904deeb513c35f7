"""Study orchestration beyond one process: Kubernetes Jobs rendered by MLflow's backend code and checked
against the Kubernetes API models, the local project backend and the in-process worker pool with parallel
children, and studies killed with SIGKILL midway (in a pipeline; the study process itself, its workers with
it) that, rerun, retrain nothing finished and report what an uninterrupted study does."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient

from stilts_mlflow.scaling.design import StudyDesign
from stilts_mlflow.scaling.launch import KUBERNETES_PROJECT, LaunchConfig, child_threads, entry_parameters
from stilts_mlflow.options import Options
from helpers import by_phase, numbers, runs, smoke_study, stilts

PROJECT = Path(__file__).resolve().parents[1]
BACKEND = str(PROJECT / "deploy" / "kubernetes" / "backend.json")


def _as_v1_job(manifest: dict):
    """Deserialize into kubernetes' V1Job (required fields and types checked) and back: a field the API
    does not know would be dropped on the way, so the round trip must give the manifest back."""
    api = ApiClient()
    job = api._ApiClient__deserialize(manifest, "V1Job")
    assert api.sanitize_for_serialization(job) == manifest
    return job


def test_kubernetes_jobs_render_without_a_cluster_and_match_the_api(tmp_path):
    out = tmp_path / "jobs"
    proc = stilts(
        [
            "scaling",
            "--preset",
            "smoke",
            "--sizes",
            "0-1",
            "--seeds",
            "0,1",
            "--backend",
            "kubernetes",
            "--backend-config",
            BACKEND,
            "--render-jobs",
            str(out),
        ],
        tmp_path,
        tmp_path / "cache",
        extra_env={"KUBE_MLFLOW_TRACKING_URI": "http://tracking.stilts.svc:5000"},
    )
    assert "20 Kubernetes Jobs (0 pipelines already finished)" in proc.stdout, proc.stdout
    manifests = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]
    assert len(manifests) == 20  # k = 0 (1 subset) and k = 1 (9) x 2 seeds
    seen = Counter()
    for manifest in manifests:
        job = _as_v1_job(manifest)
        assert job.kind == "Job" and job.spec.template.spec.restart_policy == "Never"
        (container,) = job.spec.template.spec.containers
        assert container.image.startswith("registry.example.org/stilts/stilts-train@sha256:")
        assert container.command[:4] == ["python", "-m", "stilts_mlflow", "pipeline"]
        args = dict(zip(container.command[4::2], container.command[5::2]))
        seen[(args["--tasks"], args["--seed"])] += 1
        env = {e.name: e.value for e in container.env}
        assert env["MLFLOW_TRACKING_URI"] == "http://tracking.stilts.svc:5000"  # MLflow's KUBE_ override
        assert {"MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "STILTS_CACHE"} <= set(env)
    design = StudyDesign(sizes=(0, 1), subsets_per_size=3, seeds=(0, 1))
    assert seen == Counter((",".join(s) or "none", str(seed)) for s, seed in design.runs())


def test_kubernetes_project_has_the_pipeline_entry_point_with_the_study_parameters():
    from mlflow.projects import _project_spec

    project = _project_spec.load_project(str(KUBERNETES_PROJECT))
    assert project.docker_env["image"] == "stilts-train"
    params = entry_parameters(Options(preset="smoke", tasks=("mnli", "squad"), seed=2), "abc123")
    command = project.get_entry_point("pipeline").compute_command(params, None)
    assert "--tasks mnli,squad" in command and "--seed 2" in command and "--parent-run-id abc123" in command


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "slurm"}, "unknown backend 'slurm'"),
        ({"backend": "kubernetes"}, "needs --backend-config"),
        ({"backend": "kubernetes", "backend_config": "nope.json"}, "nope.json does not exist"),
        ({"max_parallel": 0}, "at least 1"),
    ],
)
def test_launch_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LaunchConfig(**kwargs)


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_max_parallel_is_one_line_naming_the_field(tmp_path, value):
    proc = stilts(["scaling", "--preset", "smoke", "--max-parallel", value], tmp_path, tmp_path / "cache", check=False)
    assert proc.returncode == 2 and "max_parallel must be a whole number >= 1 or auto" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "mlflow.db").exists()


def test_kubernetes_on_a_local_store_is_one_line_not_a_traceback(tmp_path):
    """Without --backend-config the project's deploy/kubernetes/backend.json is used; pods cannot reach this
    machine's sqlite file, which the study says in one line before it submits anything."""
    proc = stilts(
        ["scaling", "--preset", "smoke", "--backend", "kubernetes"], tmp_path, tmp_path / "cache", check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "set MLFLOW_TRACKING_URI" in proc.stderr.strip().splitlines()[-1]


STUDY = smoke_study("0,1,2,3")


@pytest.mark.slow
def test_local_backend_runs_children_in_parallel_as_child_runs_and_reuses_them(tmp_path):
    first = stilts(STUDY + ["--backend", "local", "--max-parallel", "2"], tmp_path, tmp_path / "cache")
    assert "pipelines: 4 (0 reused)" in first.stdout, first.stdout
    all_runs = runs(tmp_path)
    (parent,) = by_phase(all_runs, "scaling")
    children = by_phase(all_runs, "pipeline")
    assert len(children) == 4 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["stilts.seed"] for c in children} == {"0", "1", "2", "3"}
    assert len(by_phase(all_runs, "pretrain")) == 1  # trained once by the study, reused by every child
    assert parent.data.params["backend"] == "local" and parent.data.params["max_parallel"] == "2"
    threads = os.environ.get("OMP_NUM_THREADS") or str(child_threads(2))  # cores split between 2 children
    assert {c.data.tags["stilts.torch_threads"] for c in children} == {threads}
    # children run without progress bars (STILTS_NO_PROGRESS), which would interleave on one terminal: neither
    # the phases' nor the data's nor the libraries' (transformers saving and loading weights, MLflow artifacts)
    bars = r"(pretrain|intermediate|target|data|Loading weights|Writing model shards|Downloading artifacts): +\d+%\|"
    assert not re.search(bars, first.stderr), first.stderr[-2000:]
    again = stilts(STUDY + ["--backend", "local", "--max-parallel", "2"], tmp_path, tmp_path / "cache")
    assert "pipelines: 4 (4 reused)" in again.stdout
    assert len(by_phase(runs(tmp_path), "pipeline")) == 4


@pytest.mark.slow
def test_study_killed_midway_resumes_without_retraining_and_reports_the_same(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    stilts(STUDY + ["--max-parallel", "1"], whole, whole / "cache")
    killed = stilts(
        STUDY + ["--max-parallel", "1"],
        broken,
        broken / "cache",
        extra_env={"STILTS_FAULT_KILL_AT": "target:9#3"},
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    done_before = {r.data.tags["stilts.key"] for r in by_phase(runs(broken), "target") if r.info.status == "FINISHED"}
    assert len(done_before) == 2  # the first two pipelines finished before the kill
    resumed = stilts(STUDY + ["--max-parallel", "1"], broken, broken / "cache")
    assert "pipelines: 4 (2 reused)" in resumed.stdout, resumed.stdout
    targets = Counter(r.data.tags["stilts.key"] for r in by_phase(runs(broken), "target"))
    assert all(targets[key] == 1 for key in done_before)  # nothing finished was trained again
    assert "resuming from step 6" in resumed.stderr  # the killed pipeline's target phase, from its checkpoint

    assert numbers(broken) == numbers(whole)


def _children_of(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _finished_pipelines(db: Path) -> list[str]:
    """Read-only, plain sqlite: an MLflow client here would race the study's own creation of the store."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return [
                r[0]
                for r in con.execute(
                    "select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid where t.key = 'stilts.phase' "
                    "and t.value = 'pipeline' and r.status = 'FINISHED'"
                )
            ]
    except sqlite3.Error:  # not there yet, or its tables not yet created
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


POOL = smoke_study("0,1,2,3,4,5", "--max-parallel", "2")


@pytest.mark.slow
def test_worker_pool_runs_children_and_a_killed_study_takes_its_workers_and_resumes(tmp_path):
    """The in-process backend with 2 workers: child runs under the study, each worker on cores / 2 threads;
    SIGKILL of the study process ends its workers too (nothing trains on, orphaned), and the rerun retrains
    nothing finished and reports what an uninterrupted study does."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    first = stilts(POOL, whole, whole / "cache")
    assert "pipelines: 6 (0 reused)" in first.stdout, first.stdout
    assert "6 pipelines on 2 worker processes" in first.stderr
    all_runs = runs(whole)
    (parent,) = by_phase(all_runs, "scaling")
    children = by_phase(all_runs, "pipeline")
    assert len(children) == 6 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["stilts.torch_threads"] for c in children} == {str(child_threads(2))}
    assert len(by_phase(all_runs, "pretrain")) == 1

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"STILTS_CACHE": str(broken / "cache")}
    study = subprocess.Popen(
        [sys.executable, "-m", "stilts_mlflow", *POOL],
        cwd=broken,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    finished: list = []
    while len(finished) < 2:
        assert study.poll() is None and time.monotonic() < deadline, "the study ended before it could be killed"
        time.sleep(0.3)
        finished = _finished_pipelines(broken / "mlflow.db")
    workers = _children_of(study.pid)
    os.kill(study.pid, signal.SIGKILL)
    study.wait()
    assert workers
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "workers outlived the killed study"
    done_before = {r.data.tags["stilts.key"] for r in by_phase(runs(broken), "target") if r.info.status == "FINISHED"}
    finished = [r for r in by_phase(runs(broken), "pipeline") if r.info.status == "FINISHED"]
    assert 2 <= len(finished) < 6
    resumed = stilts(POOL, broken, broken / "cache")
    assert f"pipelines: 6 ({len(finished)} reused)" in resumed.stdout, resumed.stdout
    targets = Counter(r.data.tags["stilts.key"] for r in by_phase(runs(broken), "target"))
    assert all(targets[key] == 1 for key in done_before)  # nothing finished was trained again
    assert numbers(broken) == numbers(whole)
