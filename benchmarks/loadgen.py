"""A bounded HTTP load generator: N requests at a fixed concurrency, latency percentiles, errors, and the
server's RSS before and after (when its pid is given).

    python -m benchmarks.loadgen --url http://127.0.0.1:8080/v1/nli --requests 10000 --concurrency 32 --pid PID
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import click
import numpy as np

log = logging.getLogger(__name__)

PAIRS = [
    ("Tom buys a big dog .", "Tom buys a large dog ."),
    ("Rosa achète un chien grand .", "Rosa achète un chien petit ."),
    ("Amit 买了一只大狗。", "Amit 买了一只狗。"),
    ("Omar يشتري كلبا كبيرا .", "Omar يشتري كلبا صغيرا ."),
    ("Lena चो दुखु खुकेवे सोजि ।", "Lena चो दुर खुकेवे सोजि ।"),
]


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    import psutil

    return psutil.Process(pid).memory_info().rss


def body(payload: str, premise: str, hypothesis: str) -> dict:
    """One request body: `nli` is serving/'s POST /v1/nli, `mlflow` is `mlflow models serve`'s /invocations."""
    if payload == "nli":
        return {"premise": premise, "hypothesis": hypothesis}
    if payload == "mlflow":
        return {"dataframe_records": [{"premise": premise, "hypothesis": hypothesis}]}
    raise ValueError(f"unknown payload {payload!r}; allowed: nli, mlflow")


async def _run(url: str, requests: int, concurrency: int, timeout: float, payload: str) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            i = sent
            sent += 1
            premise, hypothesis = PAIRS[i % len(PAIRS)]
            start = time.perf_counter()
            try:
                r = await client.post(url, json=body(payload, premise, hypothesis))
                if r.status_code != 200:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": seconds,
        "throughput_rps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


def run(
    url: str,
    requests: int = 1000,
    concurrency: int = 32,
    pid: int | None = None,
    timeout: float = 30.0,
    payload: str = "nli",
) -> dict:
    body(payload, "", "")
    before = rss_bytes(pid)
    result = asyncio.run(_run(url, requests, concurrency, timeout, payload))
    after = rss_bytes(pid)
    if before is not None:
        result.update(rss_before_bytes=before, rss_after_bytes=after, rss_growth=after / before - 1)
    return result


@click.command()
@click.option("--url", required=True, help="POST endpoint, e.g. http://127.0.0.1:8080/v1/nli")
@click.option("--requests", "n", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--pid", type=int, default=None, help="Server process id, for RSS before/after.")
@click.option(
    "--payload",
    type=click.Choice(["nli", "mlflow"]),
    default="nli",
    show_default=True,
    help="Request body: nli (serving/ POST /v1/nli) or mlflow (`mlflow models serve` /invocations).",
)
def main(url: str, n: int, concurrency: int, pid: int | None, payload: str) -> None:
    """Fire N requests at a fixed concurrency and print the latency/error/RSS summary as JSON."""
    click.echo(json.dumps(run(url, n, concurrency, pid, payload=payload), indent=1))


if __name__ == "__main__":
    main()
