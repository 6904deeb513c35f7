"""Checkpoints through the artifact store: a phase resumed where its work directory is absent (another node
of a cluster, a fresh disk) continues from its newest logged checkpoint with the best weights that go with it,
and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import mlflow
import pytest

from stilts_mlflow import checkpoint, checkpoint_store
from helpers import RESTARTING, by_phase, runs, stilts


def _fake_checkpoint(work: Path, step: int, best_step: int) -> Path:
    """What checkpoint.save leaves (trainer_state.json and the files beside it) and train.py's best weights."""
    last = work / "train" / "last"
    last.mkdir(parents=True, exist_ok=True)
    (last / checkpoint.STATE).write_text(json.dumps({"step": step, "best_step": best_step}))
    (last / "model.safetensors").write_text(f"weights at {step}")
    if best_step == step:
        (work / "train" / checkpoint_store.BEST).write_text(f"best weights from {step}")
    return last


def test_restore_takes_the_newest_checkpoint_and_the_best_weights_logged_with_or_before_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("checkpoints")
    work = tmp_path / "node-a"
    with mlflow.start_run() as run:
        logger = checkpoint_store.CheckpointLogger("target")
        for step, best_step in ((6, 6), (12, 12), (18, 12)):  # the best weights logged at 6 and 12, not at 18
            logger(_fake_checkpoint(work, step, best_step), step, {"xnli/accuracy.en": step / 100})
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert sorted(m.tags.get(checkpoint_store.BEST_TAG, "-") for m in models) == ["-", "12", "6"]

    elsewhere = tmp_path / "node-b"
    (restored,) = checkpoint_store.restore(run.info.run_id, elsewhere)
    assert (restored.directory, restored.step) == ("train", 18)
    last = checkpoint.find(elsewhere / "train" / "last")
    assert last is not None and checkpoint.read_state(last) == {"step": 18, "best_step": 12}
    assert (last / "model.safetensors").read_text() == "weights at 18"
    assert (elsewhere / "train" / checkpoint_store.BEST).read_text() == "best weights from 12"
    assert not (last / checkpoint_store.BEST).exists() and not list((elsewhere / "train").glob(".restore.*"))
    # where the checkpoint is already on disk (the node that trained it), nothing is fetched
    assert checkpoint_store.restore(run.info.run_id, work) == []


@pytest.mark.slow
def test_killed_phase_resumes_on_a_fresh_disk_from_the_artifact_store(tmp_path):
    """The target phase with a restart, killed inside the restart, rerun with another STILTS_CACHE (nothing of
    the first disk): both attempts' checkpoints and best weights come from the artifact store, the restart
    resumes from step 6, and the result is the uninterrupted run's."""
    args = ["pipeline", "--preset", "smoke", "--no-progress"]
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    clean.mkdir(), broken.mkdir()
    first = stilts(args, clean, clean / "cache", prelude=RESTARTING)
    killed = stilts(
        args, broken, broken / "cache", {"STILTS_FAULT_KILL_AT": "target:9#2"}, check=False, prelude=RESTARTING
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = stilts(args, broken, broken / "other-node-cache", prelude=RESTARTING)
    assert "resuming from step 12" in resumed.stderr and "resuming from step 6" in resumed.stderr
    assert resumed.stdout == first.stdout
    (target,) = by_phase(runs(broken), "target")
    assert target.info.status == "FINISHED" and target.data.metrics["attempts"] == 2
    assert target.data.tags["stilts.restored_checkpoint"].startswith("train step 12 (models:/")
    assert "train-restart1 step 6" in target.data.tags["stilts.restored_checkpoint"]
