"""Cached, resumable phase runs: a phase's MLflow run is found by its key (`stilts.key`) and reused when
finished; an unfinished one resumes from the checkpoint in `$STILTS_CACHE/runs/<key>/`, or where that directory
is absent (another node of a cluster), from its newest checkpoint in the artifact store (checkpoint_store.py). One process per key
(a file lock); in a multi-process launch rank 0 decides and tracks while every rank trains along."""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow

from stilts_mlflow import checkpoint_store, distributed, tracking
from stilts_mlflow.data import cache_dir

log = logging.getLogger(__name__)


@dataclass
class PhaseOutput:
    key: str
    path: Path
    run_id: str
    reused: bool
    metrics: dict[str, float]


def run_phase(
    phase: str, key: str, params: dict[str, Any], tags: dict[str, Any], body: Callable[[Path], dict[str, float]]
) -> PhaseOutput:
    """Reuse a finished run with this key, else run `body(work_dir, output_dir)` in a (resumed) run."""
    work = cache_dir() / "runs" / key
    work.mkdir(parents=True, exist_ok=True)
    if distributed.world_size() > 1:
        return _run_phase_ranks(phase, key, work, params, tags, body)
    with open(work / "lock", "w") as lock:
        # One process per phase key: a concurrent pipeline waits here, then reuses the finished run. The
        # OS drops the lock when its holder dies (even by SIGKILL), so a RUNNING run found while holding
        # it is an interrupted one, safe to resume.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _finished(phase, key, work) or _run_new(phase, key, work, params, tags, body)


def _run_phase_ranks(
    phase: str,
    key: str,
    work: Path,
    params: dict[str, Any],
    tags: dict[str, Any],
    body: Callable[[Path, Path], dict[str, float]],
) -> PhaseOutput:
    """A multi-process launch: rank 0 decides (reuse or train) and tracks; every rank trains along."""
    reused = distributed.broadcast(_finished(phase, key, work) if distributed.is_main() else None)
    if reused is not None:
        return reused
    if distributed.is_main():
        out = _run_new(phase, key, work, params, tags, body)
    else:  # same steps, outputs written by rank 0 only (this rank's go to a scratch directory)
        with tempfile.TemporaryDirectory() as scratch:
            body(work, Path(scratch))
        out = None
    distributed.barrier()
    return distributed.broadcast(out)


def _finished(phase: str, key: str, work: Path) -> PhaseOutput | None:
    """The output of a finished run with this key (local copy, else its logged artifacts), if there is one."""
    done = tracking.find_run(key)
    if done is None:
        return None
    out_dir = work / "output"
    path = (
        out_dir
        if (out_dir / "DONE").exists()
        else Path(mlflow.artifacts.download_artifacts(run_id=done.info.run_id, artifact_path="output"))
    )
    log.info("%s: reusing finished run %s (stilts.key %s)", phase, done.info.run_id, key)
    metrics = json.loads((path / "phase_metrics.json").read_text())
    return PhaseOutput(key, path, done.info.run_id, True, metrics)


def _run_new(
    phase: str,
    key: str,
    work: Path,
    params: dict[str, Any],
    tags: dict[str, Any],
    body: Callable[[Path, Path], dict[str, float]],
) -> PhaseOutput:
    """`body` in a new (or resumed, if unfinished) run of this key; its output logged as artifacts."""
    out_dir = work / "output"
    with tracking.start(phase, {"phase": phase, **tags}, params, key=key) as run:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        # resumed on a machine that did not train it: its logged checkpoints (one process; the ranks of a
        # multi-process launch resume from their shared work directory only, all from the same step)
        if distributed.world_size() == 1 and not any(work.glob("train*/last")):
            restored = checkpoint_store.restore(run.info.run_id, work)
            if restored:
                tracking.set_tag("restored_checkpoint", "; ".join(r.describe() for r in restored))
        metrics = body(work, out_dir)
        (out_dir / "phase_metrics.json").write_text(json.dumps(metrics, indent=1))
        (out_dir / "DONE").write_text(key)
        mlflow.log_artifacts(str(out_dir), artifact_path="output")
        return PhaseOutput(key, out_dir, run.info.run_id, False, metrics)
