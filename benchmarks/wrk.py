"""Load from `wrk` (a C load generator; Debian package `wrk`): fixed connections for a fixed time, latency
percentiles from its --latency table. The Python generator (loadgen.py) tops out near 400 requests/s at
concurrency 32 on 2 cores (httpx's pool), below what the server answers, so it is only the fallback."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ensure_wrk() -> str | None:
    """Path of wrk; as root on Debian, install it with apt-get first. None when neither works."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    log.info("installing wrk with apt-get")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
    return shutil.which("wrk")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def parse(output: str, concurrency: int) -> dict:
    """wrk's report -> requests, throughput, p50/p99/max and errors (non-2xx and socket errors)."""
    pct = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.M)}
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if not (done and "50" in pct and "99" in pct):
        raise RuntimeError(f"could not read wrk's report:\n{output}")
    requests, seconds = int(done.group(1)), _ms(done.group(2) + done.group(3)) / 1000
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": errors,
        "seconds": seconds,
        "throughput_rps": requests / seconds,
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
        "max_ms": _ms(latency.group(1)) if latency else None,
        "client": "wrk",
    }


def run(url: str, body: dict, concurrency: int, seconds: float, wrk: str = "wrk") -> dict:
    """POST `body` as JSON at `concurrency` connections for `seconds` (one wrk thread)."""
    script = (
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "post.lua"
        path.write_text(script)
        out = subprocess.run(
            [wrk, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(path), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return parse(out, concurrency)
