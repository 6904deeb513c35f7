"""Where a study's child pipelines run.

- `in-process` (default): inside the study's own process, one after another (`max_parallel` 1), or on a pool
  of `max_parallel` worker processes that each keep their imports and data between pipelines (workers.py).
- `local`: each child is an MLflow project run of this project's `pipeline` entry point
  (`mlflow.projects.run(..., backend="local", synchronous=False)`), `max_parallel` at a time.
- `kubernetes`: each child is submitted through MLflow's Kubernetes project backend: MLflow builds an
  image from `deploy/kubernetes/MLproject` (docker_env: the Dockerfile's train target), pushes it to the
  backend config's `repository-uri` and creates one Job per child from the config's job template.
  `render_kubernetes_jobs` renders those Jobs with MLflow's own job builder, without a cluster.
- `ray`: each child is a Ray task on a Ray cluster (ray_backend.py), `max_parallel` at a time.

A child records its `stilts.key` and its result row itself (cli `pipeline`), so whichever backend ran it,
the study reads it back the same way and a rerun reuses it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import yaml

from stilts_mlflow.choices import BACKENDS
from stilts_mlflow.options import Options, subset_name
from stilts_mlflow.process_pool import cores, threads_each

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[2]
KUBERNETES_PROJECT = PROJECT_DIR / "deploy" / "kubernetes"
KUBERNETES_BACKEND_CONFIG = KUBERNETES_PROJECT / "backend.json"  # the default --backend-config of kubernetes
UNRESOLVED_DIGEST = "sha256:" + "0" * 64  # rendering only: MLflow puts the pushed image's digest here


@dataclass(frozen=True)
class LaunchConfig:
    backend: str = "in-process"
    # JSON file. kubernetes: kube-context, repository-uri, kube-job-template-path; ray: address, resources, retries
    backend_config: str | None = None
    max_parallel: int = 1
    poll_seconds: float = 2.0

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {self.max_parallel}")
        if self.backend == "kubernetes" and not self.backend_config:
            raise ValueError("the kubernetes backend needs --backend-config (see deploy/kubernetes/backend.json)")
        if self.backend_config and not Path(self.backend_config).is_file():
            raise ValueError(f"backend config {self.backend_config} does not exist")

    @property
    def project_uri(self) -> str:
        return str(KUBERNETES_PROJECT if self.backend == "kubernetes" else PROJECT_DIR)


def entry_parameters(opts: Options, parent_run_id: str) -> dict[str, str]:
    """The `pipeline` entry point's parameters for these options (the entry point's own spelling)."""
    unsupported = {
        k: v
        for k, v in (
            ("source", opts.source),
            ("data_dir", opts.data_dir),
            ("hub_mirror", opts.hub_mirror),
            ("pretrained", opts.pretrained),
        )
        if v
    }
    if unsupported or opts.pretrain_seed:
        raise ValueError(
            f"project backends run the pipeline entry point, which has no {', '.join(unsupported) or 'pretrain_seed'} "
            "parameter; use --backend in-process for these options"
        )
    return {
        "preset": opts.preset,
        "tasks": ",".join(opts.tasks) or "none",
        "seed": str(opts.seed),
        "pretrain": opts.pretrain,
        "sampler": opts.sampler,
        "temperature": str(opts.temperature),
        "cap": str(opts.cap),
        "budget": opts.budget,
        "select": opts.select,
        "mixed_precision": opts.mixed_precision,
        "parent_run_id": parent_run_id,
    }


def kubernetes_config(path: str) -> dict[str, Any]:
    """The backend config as MLflow reads it, with the job template loaded (relative paths: from the
    config file's directory or the working directory)."""
    cfg = json.loads(Path(path).read_text())
    for key in ("kube-context", "repository-uri", "kube-job-template-path"):
        if key not in cfg:
            raise ValueError(
                f"{path}: missing {key!r} (MLflow's Kubernetes backend needs kube-context, "
                "repository-uri and kube-job-template-path)"
            )
    template = Path(cfg["kube-job-template-path"])
    if not template.is_file() and (Path(path).parent / template.name).is_file():
        template = Path(path).parent / template.name
    if not template.is_file():
        raise ValueError(f"{path}: kube-job-template-path {cfg['kube-job-template-path']} does not exist")
    return {**cfg, "kube-job-template-path": str(template), "kube-job-template": yaml.safe_load(template.read_text())}


def render_kubernetes_jobs(
    children: list[Options], config_path: str, parent_run_id: str, experiment_id: str
) -> list[dict[str, Any]]:
    """One Job manifest per child, built by MLflow's Kubernetes backend code from the project's entry point
    command and the run environment MLflow gives it (the run id is left to submission time)."""
    from mlflow.projects import _project_spec
    from mlflow.projects.kubernetes import _get_kubernetes_job_definition, _get_run_command
    from mlflow.projects.utils import get_entry_point_command, get_run_env_vars

    cfg = kubernetes_config(config_path)
    project = _project_spec.load_project(str(KUBERNETES_PROJECT))
    jobs = []
    for i, opts in enumerate(children):
        command = get_entry_point_command(project, "pipeline", entry_parameters(opts, parent_run_id), None)
        env = get_run_env_vars(run_id="ASSIGNED_AT_SUBMISSION", experiment_id=experiment_id)
        job = _get_kubernetes_job_definition(
            project.name,
            cfg["repository-uri"],
            UNRESOLVED_DIGEST,
            _get_run_command(command),
            env,
            copy.deepcopy(cfg["kube-job-template"]),
        )
        job["metadata"]["name"] = f"{project.name}-{i:03d}"  # MLflow names it by submission time
        jobs.append(job)
    return jobs


def pod_tracking_uri() -> str:
    """The tracking URI a Job's pod gets (MLflow's rule: KUBE_MLFLOW_TRACKING_URI, else this process's)."""
    return os.environ.get("KUBE_MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def _submit(opts: Options, launch: LaunchConfig, parent_run_id: str, experiment_id: str):
    backend_config = kubernetes_config(launch.backend_config) if launch.backend == "kubernetes" else None
    if backend_config is not None:
        backend_config.pop("kube-job-template")
    name = f"pipeline k={len(opts.tasks)} {subset_name(opts.tasks)} seed={opts.seed}"
    return mlflow.projects.run(
        launch.project_uri,
        entry_point="pipeline",
        run_name=name,
        parameters=entry_parameters(opts, parent_run_id),
        experiment_id=experiment_id,
        backend=launch.backend,
        backend_config=backend_config,
        synchronous=False,
        env_manager="local" if launch.backend == "local" else None,
    )


def auto_parallel() -> int:
    """`max_parallel` auto: one child per CPU core (at most 8) on a machine without a GPU, else one at a time
    (each child would take the whole GPU)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(8, cores()))


def child_threads(max_parallel: int) -> int:
    """Torch threads per child on this machine (local backend, worker pool): its cores split among the children
    running at once.
    Tiny models scale poorly across threads: on 2 cores, two 1-thread tiny children trained 24-26 target
    steps/s each, one 2-thread child 25 (an MLM step: 216 ms on 1 thread, 140 ms on 2)."""
    return threads_each(max_parallel)


def run_submitted(
    children: list[tuple[int, Options]],
    launch: LaunchConfig,
    parent_run_id: str,
    collect: Callable[[Options], dict[str, Any] | None],
    on_done: Callable[[int, dict[str, Any]], None],
) -> None:
    """Submit `children` (index, options), at most `max_parallel` running at once; when one ends, read its
    row with `collect` and hand it to `on_done`. A failed child stops the study after the running ones end
    (their results are kept: a rerun continues from them)."""
    # the entry point runs `python`: this interpreter's, whatever PATH the study was started with
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    if launch.backend == "kubernetes" and pod_tracking_uri().split(":", 1)[0] in ("sqlite", "file", ""):
        raise ValueError(
            f"pods cannot write to this machine's tracking store {pod_tracking_uri()}: set "
            "MLFLOW_TRACKING_URI (or KUBE_MLFLOW_TRACKING_URI) to the team server, deploy/compose.yaml"
        )
    if launch.backend == "local":
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # children share this machine's cores
            os.environ.setdefault(var, str(child_threads(launch.max_parallel)))
        os.environ["STILTS_NO_PROGRESS"] = "1"  # children run unattended: the study's own bar is the progress
    pending, running, failed = list(children), {}, []
    while pending or running:
        while pending and len(running) < launch.max_parallel and not failed:
            index, opts = pending.pop(0)
            running[index] = (opts, _submit(opts, launch, parent_run_id, experiment_id))
            log.info("submitted pipeline %d (%s backend, run %s)", index + 1, launch.backend, running[index][1].run_id)
        time.sleep(launch.poll_seconds)
        for index, (opts, submitted) in list(running.items()):
            status = submitted.get_status()
            if status not in ("FINISHED", "FAILED", "KILLED"):
                continue
            del running[index]
            row = collect(opts) if status == "FINISHED" else None
            if row is None:
                failed.append(f"pipeline {index + 1} (run {submitted.run_id}) ended {status}")
            else:
                on_done(index, row)
        if failed and not running:
            pending.clear()
    if failed:
        raise RuntimeError("; ".join(failed) + ". Finished pipelines are kept: rerun the study to continue.")
