"""Serving: serving/ (FastAPI, micro-batching, onnxruntime) vs `mlflow models serve` on the same ONNX
export (the pyfunc flavour `stilts export` logs), each started with its defaults on loopback and driven
by the bounded load generator at concurrency 1, 8 and 32. One server runs at a time. The bare engine (the
same export's `NLIEngine.logits` called in a loop, no HTTP) runs the batch size the server formed at
concurrency 32, read from its `stilts_batch_pairs` histogram: the server's share of it is what HTTP,
validation and batching cost."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import loadgen, wrk
from serving.timeouts import resolve_parser

log = logging.getLogger(__name__)
CONCURRENCY = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], ready_url: str, log_path: Path, timeout: float = 120.0):
    """Start `cmd` (this interpreter's bin/ first on PATH: `mlflow models serve` execs `uvicorn`), wait until
    `ready_url` answers 200, yield the process, stop it."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(cmd)} exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ready_url} not ready after {timeout:.0f} s; see {log_path}")
            time.sleep(0.3)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def batch_pairs(metrics_url: str) -> tuple[float, float]:
    """(pairs, onnxruntime calls) so far, from the server's `stilts_batch_pairs` histogram."""
    text = httpx.get(metrics_url, timeout=10).text
    found = {m[0]: float(m[1]) for m in re.findall(r"^stilts_batch_pairs_(sum|count) (\S+)$", text, re.MULTILINE)}
    return found["sum"], found["count"]


def bare_engine(export_dir: Path, batch: int, seconds: float) -> dict:
    """Pairs per second of the export's engine, loaded as the server loads it, scoring `batch` copies of
    the load generator's pair per call for `seconds` (tokenization included, as in the server)."""
    from serving.engine import NLIEngine

    engine = NLIEngine.load(export_dir, "fp32")
    premise, hypothesis = loadgen.PAIRS[0]
    premises, hypotheses = [premise] * batch, [hypothesis] * batch
    for _ in range(5):
        engine.logits(premises, hypotheses)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.logits(premises, hypotheses)
        calls += 1
    elapsed = time.perf_counter() - start
    return {"batch": batch, "calls": calls, "pairs_per_s": round(calls * batch / elapsed, 1)}


def _drive(name: str, url: str, payload: str, quick: bool, pid: int, wrk_path: str | None) -> list[dict]:
    """Warm up, then each concurrency level: wrk for a fixed time, else the Python generator for N requests."""
    sample = loadgen.body(payload, *loadgen.PAIRS[0])
    loadgen.run(url, 20, 4, payload=payload)  # warm-up (and a check that the endpoint answers 200)
    rows = []
    metrics_url = url.rsplit("/v1/", 1)[0] + "/metrics" if "/v1/" in url else None
    for c in CONCURRENCY:
        before = loadgen.rss_bytes(pid)
        pairs_before = batch_pairs(metrics_url) if metrics_url else None
        if wrk_path:
            r = wrk.run(url, sample, c, 3 if quick else 10, wrk_path)
        else:
            r = {**loadgen.run(url, (300 if quick else 3000), c, payload=payload), "client": "python"}
        after = loadgen.rss_bytes(pid)
        r.update(server=name, rss_before_mb=round(before / 2**20, 1), rss_after_mb=round(after / 2**20, 1))
        if pairs_before:
            pairs, calls = (a - b for a, b in zip(batch_pairs(metrics_url), pairs_before))
            r["mean_batch_pairs"] = round(pairs / calls, 2) if calls else None
        log.info(
            "serving %s c=%d: %.0f rps, p50 %.1f ms, p99 %.1f ms, %d errors (%s)",
            name,
            c,
            r["throughput_rps"],
            r["p50_ms"],
            r["p99_ms"],
            r["errors"],
            r["client"],
        )
        rows.append(r)
    return rows


def run(export_dir: Path, quick: bool) -> dict:
    from stilts_mlflow.export import save_onnx_pyfunc

    wrk_path = wrk.ensure_wrk()
    example = [("Tom buys a big dog .", "Tom buys a large dog .")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pyfunc = save_onnx_pyfunc(export_dir, tmp / "pyfunc", example)
        # serving/ with its default parser (httptools when installed), then with h11 (pure Python), side by side
        for name, parser in (("serving/", "auto"), ("serving/ (h11)", "h11")):
            port = free_port()
            ours = [sys.executable, "-m", "serving", "--model-uri", str(export_dir), "--port", str(port)]
            with server(ours + ["--http", parser], f"http://127.0.0.1:{port}/readyz", tmp / f"ours-{parser}.log") as p:
                rows += _drive(name, f"http://127.0.0.1:{port}/v1/nli", "nli", quick, p.pid, wrk_path)
        port = free_port()
        theirs = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            str(pyfunc),
            "-p",
            str(port),
            "--env-manager",
            "local",
        ]
        with server(theirs, f"http://127.0.0.1:{port}/ping", tmp / "mlflow.log") as proc:
            rows += _drive(
                "mlflow models serve", f"http://127.0.0.1:{port}/invocations", "mlflow", quick, proc.pid, wrk_path
            )
        workers = re.search(r"--workers (\d+)", (tmp / "mlflow.log").read_text())
    by = {(r["server"], r["concurrency"]): r for r in rows}
    top = CONCURRENCY[-1]
    ours_top, theirs_top = by[("serving/", top)], by[("mlflow models serve", top)]
    engine = bare_engine(export_dir, max(1, round(ours_top["mean_batch_pairs"] or 1)), 3 if quick else 10)
    log.info("bare engine, batch %d: %.0f pairs/s", engine["batch"], engine["pairs_per_s"])
    return {
        "bare_engine": engine,
        "server_over_engine_at_c32": round(ours_top["throughput_rps"] / engine["pairs_per_s"], 2),
        "rows": rows,
        "throughput_ratio_at_c32": round(ours_top["throughput_rps"] / theirs_top["throughput_rps"], 2),
        "parser": resolve_parser("auto"),
        "over_h11_at_c32": round(ours_top["throughput_rps"] / by[("serving/ (h11)", top)]["throughput_rps"], 2),
        "p99_over_p50_at_c32": round(ours_top["p99_ms"] / ours_top["p50_ms"], 2),
        "mlflow_workers": int(workers.group(1)) if workers else None,
    }
