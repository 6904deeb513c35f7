"""Study cost: wall time of `stilts scaling` (smoke preset) against the number of pipelines, each study in
a fresh tracking store (so each pays its own shared pretraining), a linear fit, a rerun of the largest
study in its store, which must reuse every pipeline, and the same study on each way of running its children
side by side: in-process one after another, MLflow project runs (local backend) two at a time, and the
in-process worker pool with two workers."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy import stats

from stilts_mlflow.data import cache_dir

log = logging.getLogger(__name__)


BACKENDS = {
    "sequential": ["--max-parallel", "1"],
    "local_x2": ["--backend", "local", "--max-parallel", "2"],
    "pool_x2": ["--max-parallel", "2"],
}


def _study(store: Path, pipelines: int, launch: list[str] = BACKENDS["pool_x2"]) -> tuple[float, int, int]:
    """(seconds, pipelines, reused) of a k=0 study with `pipelines` seeds in the tracking store `store`.
    Its cache shares only the data and tokenizer with this project's cache (built once, as for a user's
    second study): phase work directories, whose checkpoints a run would resume from, are its own."""
    cache = store / "cache"
    if not cache.exists():
        cache.mkdir()
        for shared in ("data", "tokenizers"):
            (cache_dir().resolve() / shared).mkdir(parents=True, exist_ok=True)
            (cache / shared).symlink_to(cache_dir().resolve() / shared)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "STILTS_CACHE": str(cache)}
    seeds = ",".join(str(s) for s in range(pipelines))
    cmd = [
        sys.executable,
        "-m",
        "stilts_mlflow",
        "scaling",
        "--preset",
        "smoke",
        "--sizes",
        "0",
        "--seeds",
        seeds,
        "--no-export",
        "--no-progress",
        "--out",
        str(store / "report"),
        *launch,
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=store, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    found = re.search(r"pipelines: (\d+) \((\d+) reused\)", out.stdout)
    return seconds, int(found.group(1)), int(found.group(2))


def run(quick: bool) -> dict:
    sizes = (1, 2, 3) if quick else (1, 2, 4, 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "warm-up").mkdir()
        _study(Path(tmp) / "warm-up", 1)  # builds smoke's data and tokenizer: every timed study then pays the same
        for n in sizes:
            store = Path(tmp) / f"n{n}"
            store.mkdir()
            seconds, pipelines, reused = _study(store, n)
            rows.append({"pipelines": pipelines, "seconds": round(seconds, 2), "reused": reused})
            log.info("study cost: %d pipelines in %.1f s", pipelines, seconds)
        rerun_s, pipelines, reused = _study(Path(tmp) / f"n{sizes[-1]}", sizes[-1])
        backends = {}
        for name, launch in BACKENDS.items():
            store = Path(tmp) / name
            store.mkdir()
            backends[name] = round(_study(store, sizes[-1], launch)[0], 2)
            log.info("study cost: %d pipelines, %s: %.1f s", sizes[-1], name, backends[name])
    fit = stats.linregress([r["pipelines"] for r in rows], [r["seconds"] for r in rows])
    log.info(
        "study cost: %.1f s + %.1f s per pipeline (r^2 %.3f); rerun %.1f s with %d/%d reused",
        fit.intercept,
        fit.slope,
        fit.rvalue**2,
        rerun_s,
        reused,
        pipelines,
    )
    return {
        "preset": "smoke",
        "rows": rows,
        "fixed_seconds": round(fit.intercept, 2),
        "seconds_per_pipeline": round(fit.slope, 2),
        "r_squared": round(fit.rvalue**2, 4),
        "rerun": {
            "pipelines": pipelines,
            "reused": reused,
            "seconds": round(rerun_s, 2),
            "share_of_first_run": round(rerun_s / rows[-1]["seconds"], 3),
        },
        "backends": {
            "pipelines": sizes[-1],
            "seconds": backends,
            "pool_speedup_vs_local": round(backends["local_x2"] / backends["pool_x2"], 3),
            "pool_speedup_vs_sequential": round(backends["sequential"] / backends["pool_x2"], 3),
        },
    }
