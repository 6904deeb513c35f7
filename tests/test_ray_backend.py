"""`stilts scaling --backend ray` on a real Ray cluster on this machine: a head and a worker node (`ray start`,
1 CPU each, told apart by a custom resource and by a STILTS_CACHE of their own) and an `mlflow server` on
loopback. Children run as Ray tasks on both nodes and report the same numbers as the in-process backend; a
rerun trains nothing; a worker node killed mid-study loses nothing finished and its child resumes on the head
from the checkpoint in the artifact store; user mistakes are one line each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlflow
import pytest

from helpers import by_phase, free_port, numbers, smoke_study, stilts
from raycluster import RAY_IP, REPO, ray_importable, start_cluster, start_mlflow_server

NO_RAY = ray_importable()
needs_ray = pytest.mark.skipif(NO_RAY is not None, reason=NO_RAY or "")
SEEDS = "0,1,2,3,4,5"
STUDY = smoke_study(SEEDS, "--max-parallel", "2")


def server_runs(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def _env(cache: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    return {
        **env,
        "STILTS_CACHE": str(cache),
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")])),
        **extra,
    }


# --- one-line errors ---------------------------------------------------------------------------------------
def _one_line_error(proc: subprocess.CompletedProcess, text: str, cwd: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (cwd / "mlflow.db").exists()


def test_ray_backend_refuses_a_local_tracking_store(tmp_path):
    proc = stilts(STUDY + ["--backend", "ray"], tmp_path, tmp_path / "cache", check=False)
    _one_line_error(proc, "MLFLOW_TRACKING_URI", tmp_path)
    proc = stilts(
        STUDY + ["--backend", "ray"],
        tmp_path,
        tmp_path / "cache",
        check=False,
        extra_env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    _one_line_error(proc, "got sqlite:///", tmp_path)


def test_ray_backend_config_with_an_unknown_key_is_one_line(tmp_path):
    config = tmp_path / "ray.json"
    config.write_text(json.dumps({"adress": "127.0.0.1:6379"}))
    proc = stilts(
        STUDY + ["--backend", "ray", "--backend-config", str(config)],
        tmp_path,
        tmp_path / "cache",
        check=False,
        extra_env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"},
    )
    _one_line_error(proc, "unknown key(s) adress", tmp_path)


@needs_ray
def test_no_cluster_at_the_address_is_one_line(tmp_path):
    address = f"{RAY_IP}:{free_port()}"
    proc = stilts(
        STUDY + ["--backend", "ray"],
        tmp_path,
        tmp_path / "cache",
        check=False,
        extra_env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "RAY_ADDRESS": address},
    )
    _one_line_error(proc, f"no Ray cluster at {address}", tmp_path)


# --- studies on the cluster ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if NO_RAY:
        pytest.skip(NO_RAY)
    srv = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pool_numbers(tmp_path_factory):
    """The same study on the in-process backend (worker pool of 2, one torch thread each, as a 1-CPU task)."""
    cwd = tmp_path_factory.mktemp("pool")
    out = stilts(STUDY, cwd, cwd / "cache")
    assert "pipelines: 6 (0 reused)" in out.stdout, out.stdout
    return numbers(cwd)


@pytest.fixture(scope="module")
def cluster():
    if NO_RAY:
        pytest.skip(NO_RAY)
    c = start_cluster()
    yield c
    c.stop()


def _pipelines_by_node(all_runs, ids: dict[str, str]) -> Counter:
    names = {v: k for k, v in ids.items()}
    return Counter(
        names.get(r.data.tags.get("stilts.ray_node_id"), "elsewhere") for r in by_phase(all_runs, "pipeline")
    )


@pytest.mark.slow
def test_worker_node_killed_mid_study_resumes_on_the_head_from_the_artifact_store(tmp_path, server, pool_numbers):
    """The worker node's child stops at target step 7 (after the step-6 checkpoint was logged); the node is
    SIGKILLed; Ray retries the child on the head, whose disk never saw it: it resumes from step 6 through the
    tracking server, nothing finished is retrained, and the numbers are the uninterrupted study's."""
    cluster = start_cluster(worker_env={"STILTS_FAULT_HANG_AT": "target:7"})
    try:
        ids = cluster.node_ids()
        experiment = "ray-fault"
        env = _env(
            tmp_path / "cache",
            {"MLFLOW_TRACKING_URI": server.uri, "RAY_ADDRESS": cluster.address, "MLFLOW_EXPERIMENT_NAME": experiment},
        )
        study = subprocess.Popen(
            [sys.executable, "-m", "stilts_mlflow", *STUDY, "--backend", "ray"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        marker, deadline = cluster.nodes["worker"].cache / "fault-hang", time.monotonic() + 400
        while not marker.exists():
            assert study.poll() is None and time.monotonic() < deadline, study.communicate()[1][-3000:]
            time.sleep(0.5)
        done_before: dict[str, str] = {}
        while not done_before:  # the head finishes a child while the worker's hangs (after its step-6 checkpoint)
            assert study.poll() is None and time.monotonic() < deadline, study.communicate()[1][-3000:]
            time.sleep(0.5)
            done_before = {
                r.data.tags["stilts.key"]: r.info.run_id
                for r in by_phase(server_runs(server.uri, experiment), "target")
                if r.info.status == "FINISHED"
            }
        cluster.kill_node("worker")
        stdout, stderr = study.communicate(timeout=500)
    finally:
        cluster.stop()
    assert study.returncode == 0, stderr[-3000:]
    assert "pipelines: 6 (0 reused)" in stdout, stdout
    all_runs = server_runs(server.uri, experiment)
    children = by_phase(all_runs, "pipeline")
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    (moved,) = [c for c in children if "stilts.ray_previous_node_id" in c.data.tags]
    assert moved.data.tags["stilts.ray_previous_node_id"] == ids["worker"]
    assert moved.data.tags["stilts.ray_node_id"] == ids["head"]  # finished on the head
    targets = by_phase(all_runs, "target")
    keys = Counter(t.data.tags["stilts.key"] for t in targets)
    assert len(keys) == 6 and set(keys.values()) == {1}  # one target run per child: nothing trained twice
    assert {t.data.tags["stilts.key"]: t.info.run_id for t in targets}.items() >= done_before.items()
    (resumed,) = [t for t in targets if t.data.tags["mlflow.parentRunId"] == moved.info.run_id]
    assert resumed.data.tags["stilts.restored_checkpoint"].startswith("train step 6 (models:/")
    assert "resuming from step 6" in stderr
    assert numbers(tmp_path) == pool_numbers


@pytest.mark.slow
def test_study_runs_on_both_nodes_matches_the_in_process_backend_and_reruns_nothing(
    tmp_path, cluster, server, pool_numbers
):
    experiment = "ray-study"
    extra = {"MLFLOW_TRACKING_URI": server.uri, "RAY_ADDRESS": cluster.address, "MLFLOW_EXPERIMENT_NAME": experiment}
    first = stilts(STUDY + ["--backend", "ray"], tmp_path, tmp_path / "cache", extra_env=extra)
    assert "pipelines: 6 (0 reused)" in first.stdout, first.stdout
    assert first.stderr.count(" seed ") >= 6 and "pipeline 6/6" in first.stderr  # a log line per finished child
    all_runs = server_runs(server.uri, experiment)
    (parent,) = by_phase(all_runs, "scaling")
    assert parent.data.params["backend"] == "ray" and parent.info.status == "FINISHED"
    children = by_phase(all_runs, "pipeline")
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    by_node = _pipelines_by_node(all_runs, cluster.node_ids())
    assert set(by_node) == {"head", "worker"} and sum(by_node.values()) == 6, by_node  # every child on the cluster
    assert len(by_phase(all_runs, "pretrain")) == 1  # the driver's, shared by every child
    # each node trained on its own disk: the target phases it ran are in its own cache
    for name in ("head", "worker"):
        assert len(list(cluster.nodes[name].cache.glob("runs/*/train/last"))) == by_node[name]
    assert numbers(tmp_path) == pool_numbers

    again = stilts(STUDY + ["--backend", "ray"], tmp_path, tmp_path / "cache", extra_env=extra)
    assert "pipelines: 6 (6 reused)" in again.stdout, again.stdout
    rerun = server_runs(server.uri, experiment)
    assert len(by_phase(rerun, "pipeline")) == 6
    for phase in ("pretrain", "target", "evaluate"):
        assert len(by_phase(rerun, phase)) == len(by_phase(all_runs, phase)), phase


@pytest.mark.slow
def test_a_study_started_in_process_is_finished_on_ray(tmp_path, cluster, server, pool_numbers):
    """The same keys and child layout on every backend: half a study run by the worker pool against the server,
    the rest on the cluster, and the numbers of a study run in one go."""
    extra = {"MLFLOW_TRACKING_URI": server.uri, "MLFLOW_EXPERIMENT_NAME": "ray-handover"}
    half = [a if a != SEEDS else "0,1,2" for a in STUDY]
    assert "pipelines: 3 (0 reused)" in stilts(half, tmp_path, tmp_path / "cache", extra_env=extra).stdout
    rest = stilts(
        STUDY + ["--backend", "ray"], tmp_path, tmp_path / "cache", extra_env={**extra, "RAY_ADDRESS": cluster.address}
    )
    assert "pipelines: 6 (3 reused)" in rest.stdout, rest.stdout
    children = by_phase(server_runs(server.uri, "ray-handover"), "pipeline")
    on_ray = [c for c in children if "stilts.ray_node_id" in c.data.tags]
    assert len(children) == 6 and len(on_ray) == 3
    assert sorted(int(c.data.tags["stilts.seed"]) for c in on_ray) == [3, 4, 5]
    assert numbers(tmp_path) == pool_numbers


@pytest.mark.slow
def test_request_no_node_can_hold_fails_with_what_was_asked_and_what_exists(tmp_path, cluster, server):
    config = tmp_path / "ray.json"
    config.write_text(json.dumps({"gpus": 1, "schedule_timeout_s": 3}))
    proc = stilts(
        STUDY + ["--backend", "ray", "--backend-config", str(config)],
        tmp_path,
        tmp_path / "cache",
        check=False,
        extra_env={"MLFLOW_TRACKING_URI": server.uri, "RAY_ADDRESS": cluster.address},
    )
    _one_line_error(proc, "no node of the Ray cluster", tmp_path)
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert "after 3 s: asked for 1 CPU, 1 GPU, 1 GiB memory" in error
    assert error.count("1 CPU, 0 GPU") == 2 and "1 worker_node" in error and "1 head_node" in error


# --- deploy/ray ----------------------------------------------------------------------------------------------
def _gib(quantity: str) -> float:
    return float(quantity.removesuffix("Gi"))


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_hold_an_xlmr_large_pipeline_per_gpu_worker(manifest):
    import yaml

    from stilts_mlflow.presets import get_preset

    doc = yaml.safe_load((Path(REPO) / "deploy" / "ray" / manifest).read_text())
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
    pinned = re.search(r"ray\[default\]==([\d.]+)", (Path(REPO) / "deploy" / "ray" / "Dockerfile").read_text())
    assert spec["rayVersion"] == pinned.group(1)  # the image's Ray is the cluster's
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # pipelines run on workers only
    need = get_preset("xlmr-large").resources
    (group,) = spec["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    store = int(group["rayStartParams"]["object-store-memory"]) / 2**30
    assert float(limits["cpu"]) >= need.cpus and limits["nvidia.com/gpu"] >= need.gpus
    assert _gib(limits["memory"]) - store >= need.memory_gb  # what Ray offers tasks after its object store
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"].startswith("http")  # children report to a server, never a pod's disk
    images = {c["image"] for g in [spec["headGroupSpec"], group] for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1  # head and workers run the same image (the same Ray and project)
    if doc["kind"] == "RayJob":
        assert "--backend ray" in doc["spec"]["entrypoint"]


def test_the_shipped_backend_config_loads():
    from stilts_mlflow.scaling.ray_backend import RaySettings

    settings = RaySettings.load("xlmr-large", str(Path(REPO) / "deploy" / "ray" / "backend.json"))
    assert settings.address == "auto" and settings.max_retries == 2 and settings.schedule_timeout_s == 600
    assert settings.request.describe() == "8 CPU, 1 GPU, 32 GiB memory"
