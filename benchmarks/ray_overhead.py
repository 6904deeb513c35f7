"""Ray backend overhead: the same smoke study (k = 0, one pipeline per seed) through the in-process worker pool
(2 workers) and through `--backend ray` on a real two-node Ray cluster on this machine (head and worker, 1 CPU
each: 2 pipelines at a time), both reporting to one `mlflow server` on loopback, side by side in one run. The
cluster's start is timed apart: a team starts it once for many studies."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stilts_mlflow.data import cache_dir

log = logging.getLogger(__name__)
# the cluster and server helpers the tests use (tests/raycluster.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _study(root: Path, name: str, seeds: int, uri: str, launch: list[str], extra: dict[str, str]) -> tuple[float, int]:
    """(seconds, reused) of a k = 0 smoke study with `seeds` pipelines in experiment `name` (again: the same
    cache). Its cache shares the data and tokenizer with this project's cache (built once); phase work
    directories are its own."""
    cache = root / name / "cache"
    if not cache.exists():
        cache.mkdir(parents=True)
        for shared in ("data", "tokenizers"):
            (cache_dir().resolve() / shared).mkdir(parents=True, exist_ok=True)
            (cache / shared).symlink_to(cache_dir().resolve() / shared)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=name, STILTS_CACHE=str(cache), **extra)
    cmd = [sys.executable, "-m", "stilts_mlflow", "scaling", "--preset", "smoke", "--sizes", "0"]
    cmd += ["--seeds", ",".join(str(s) for s in range(seeds)), "--no-export", "--no-progress", *launch]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=root / name, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return seconds, int(re.search(r"pipelines: \d+ \((\d+) reused\)", out.stdout).group(1))


def run(quick: bool) -> dict:
    from raycluster import ray_importable, start_cluster, start_mlflow_server

    why = ray_importable()
    if why:
        return {"skipped": why}
    seeds = 4 if quick else 6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = start_mlflow_server(root / "server")
        try:
            _study(root, "warm-up", 1, server.uri, ["--max-parallel", "1"], {})  # smoke's data and tokenizer
            start = time.perf_counter()
            cluster = start_cluster()
            cluster_s = time.perf_counter() - start
            try:
                pool_s, _ = _study(root, "pool", seeds, server.uri, ["--max-parallel", "2"], {})
                ray_args = ["--backend", "ray", "--max-parallel", "2"]
                ray_s, _ = _study(root, "ray", seeds, server.uri, ray_args, {"RAY_ADDRESS": cluster.address})
                rerun_s, reused = _study(root, "ray", seeds, server.uri, ray_args, {"RAY_ADDRESS": cluster.address})
            finally:
                cluster.stop()
        finally:
            server.stop()
    log.info("ray overhead: %d pipelines, pool x2 %.1f s, ray x2 %.1f s (%.2fx)", seeds, pool_s, ray_s, ray_s / pool_s)
    return {
        "preset": "smoke",
        "pipelines": seeds,
        "cluster_start_seconds": round(cluster_s, 2),
        "pool_x2_seconds": round(pool_s, 2),
        "ray_x2_seconds": round(ray_s, 2),
        "ray_over_pool": round(ray_s / pool_s, 3),
        "ray_overhead_seconds_per_pipeline": round((ray_s - pool_s) / seeds, 2),
        "ray_rerun": {"seconds": round(rerun_s, 2), "reused": reused},
    }
