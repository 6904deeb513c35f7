"""Checkpoints in the artifact store, so a phase resumes on any machine, not only the one that trained it.

Every checkpoint a phase writes (checkpoint.py: `<work>/<train dir>/last`) is also logged as an MLflow
LoggedModel of the phase's run (model type `stilts-checkpoint`, tags `step`, `stilts.checkpoint_dir`), with
the best dev weights so far (`best.safetensors`, tag `stilts.best_step`) whenever they changed since the last
one logged. A phase run resumed where its work directory is absent (another node of a cluster, a fresh disk)
restores the newest finished checkpoint of each of its training directories, and the best weights that go
with it, through the tracking server (`restore`), before training continues: the run goes on from that step
as it would have on the first machine.

The guarantee is checkpoint.py's: a checkpoint is complete or absent. A LoggedModel becomes READY only
after all its files are uploaded, and only READY ones are restored; files land in a temporary sibling of
the work directory and are renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from stilts_mlflow import checkpoint

log = logging.getLogger(__name__)
MODEL_TYPE = "stilts-checkpoint"
BEST = "best.safetensors"  # train.py's best dev weights, beside the `last` checkpoint
DIR_TAG, BEST_TAG = "stilts.checkpoint_dir", "stilts.best_step"


def log_checkpoint(path: Path, step: int, metrics: dict[str, Any], label: str, with_best: bool = False) -> str:
    """The checkpoint directory `path` as a LoggedModel of the active run with `step` and its dev metrics;
    `with_best`: the best weights beside it too (`path`'s sibling best.safetensors)."""
    path = Path(path)
    client = MlflowClient()
    run = mlflow.active_run()
    best = path.parent / BEST
    tags = {"step": str(step), "stilts.phase": label, DIR_TAG: path.parent.name}
    if with_best and best.exists():
        tags[BEST_TAG] = str(checkpoint.read_state(path)["best_step"])
    model = mlflow.initialize_logged_model(
        name=f"{label}-step{step}", source_run_id=run.info.run_id, tags=tags, model_type=MODEL_TYPE
    )
    client.log_model_artifacts(model.model_id, str(path))
    if BEST_TAG in tags:
        client.log_model_artifact(model.model_id, str(best))
    numeric = {
        k.replace("/", "_").replace(".", "_"): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and k != "step"
    }
    if numeric:
        mlflow.log_metrics(numeric, step=step, model_id=model.model_id)
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


class CheckpointLogger:
    """A phase's `on_checkpoint` callback: logs each checkpoint, with the best weights when the best step
    moved since the last checkpoint this logger logged."""

    def __init__(self, label: str):
        self.label = label
        self.best_step: int | None = None

    def __call__(self, path: Path, step: int, metrics: dict[str, Any]) -> str:
        best_step = checkpoint.read_state(path)["best_step"]
        with_best = best_step != self.best_step
        model_id = log_checkpoint(path, step, metrics, self.label, with_best)
        if with_best:
            self.best_step = best_step
        return model_id


@dataclass(frozen=True)
class Restored:
    directory: str  # the training directory under the phase's work directory (train, train-restart1, ...)
    step: int
    model_id: str

    def describe(self) -> str:
        return f"{self.directory} step {self.step} (models:/{self.model_id})"


def _checkpoints(run_id: str) -> list:
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    models = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )
    return [
        m for m in models if m.model_type == MODEL_TYPE and m.status == LoggedModelStatus.READY and DIR_TAG in m.tags
    ]


def restore(run_id: str, work: Path) -> list[Restored]:
    """Each training directory of run `run_id` that has no checkpoint under `work` gets its newest logged one
    (and the best weights logged with it or before it). Nothing to do for a new run or on the machine that
    trained it."""
    work = Path(work)
    by_dir: dict[str, list] = {}
    for model in _checkpoints(run_id):
        by_dir.setdefault(model.tags[DIR_TAG], []).append(model)
    restored = []
    for directory, models in sorted(by_dir.items()):
        if checkpoint.find(work / directory / "last") is not None:
            continue
        models.sort(key=lambda m: int(m.tags["step"]))
        newest = models[-1]
        best = next((m for m in reversed(models) if BEST_TAG in m.tags), None)
        _download(newest, best, work / directory)
        restored.append(Restored(directory, int(newest.tags["step"]), newest.model_id))
        log.info("restored checkpoint %s from the artifact store", restored[-1].describe())
    return restored


def _download(newest, best, target: Path) -> None:
    """The checkpoint files into `target`/last and the best weights into `target`/best.safetensors, each
    renamed into place from a temporary sibling."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".restore.", dir=target))
    try:
        last = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=newest.artifact_location, dst_path=str(tmp / "last"))
        )
        if best is not None:
            weights = (
                last / BEST
                if best.model_id == newest.model_id
                else Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{best.artifact_location.rstrip('/')}/{BEST}", dst_path=str(tmp / "best")
                    )
                )
            )
            os.replace(weights, target / BEST)
        (last / BEST).unlink(missing_ok=True)
        for extra in ("MLmodel", "registered_model_meta"):  # MLflow's own files, if any, are not checkpoint files
            (last / extra).unlink(missing_ok=True)
        if (last / checkpoint.STATE).exists():
            os.replace(last, target / "last")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
