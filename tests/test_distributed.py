"""A phase on several processes (torchrun, gloo on CPU; on GPUs the same with one process per GPU): only
rank 0 tracks, the others train along without touching the tracking store, and a rerun reuses it all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_pipeline import by_phase, runs


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(STILTS_CACHE=str(cwd / "cache"), OMP_NUM_THREADS="1")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    return subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "stilts_mlflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_two_processes_train_one_pipeline_tracked_once(tmp_path):
    args = ["pipeline", "--preset", "smoke", "--tasks", "mnli", "--no-progress"]
    first = _torchrun(args, tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.stdout.count("zero-shot XNLI test accuracy") == 2  # both ranks evaluated the same model
    all_runs = runs(tmp_path)
    assert sorted(r.data.tags["stilts.phase"] for r in all_runs) == [
        "evaluate",
        "intermediate",
        "pipeline",
        "pretrain",
        "target",
    ]
    assert all(r.info.status == "FINISHED" for r in all_runs)
    (target,) = by_phase(all_runs, "target")
    assert target.data.metrics["steps"] == 12 and "best/xnli/accuracy_avg" in target.data.metrics
    # Data parallel: every phase saw two processes (each rank alone, as its own rank 0, would say 1).
    assert all(
        r.data.metrics["train/processes"] == 2
        for r in all_runs
        if r.data.tags["stilts.phase"] in ("pretrain", "intermediate", "target")
    )
    assert "data parallel on 2 processes (DistributedType.MULTI_CPU)" in first.stderr
    again = _torchrun(args, tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert len(runs(tmp_path)) == 6  # one more `pipeline` command run; every phase reused


def test_accelerate_config_is_a_multi_gpu_config():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(
        str(Path(__file__).resolve().parents[1] / "deploy" / "accelerate" / "multi_gpu.yaml")
    )
    assert config.distributed_type == "MULTI_GPU" and config.num_machines == 1 and not config.use_cpu
    assert config.mixed_precision == "no"  # a pipeline option (part of stilts.key), not the launcher's
