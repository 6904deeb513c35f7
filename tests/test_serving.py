"""The HTTP API on an exported model: every endpoint, every bad input (4xx JSON naming the field, the
server keeps serving), micro-batching, start-up errors, and a bounded load test on loopback."""

import asyncio
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from netutil import free_port
from serving.app import create_app, model_info
from serving.batching import MicroBatcher
from serving.engine import NLIEngine
from serving.schemas import Limits

LIMITS = Limits(max_pairs=4, max_labels=3, max_chars=200, max_body_bytes=4096)


@pytest.fixture(scope="module")
def engine(exported):
    return NLIEngine.load(exported[0])


@pytest.fixture(scope="module")
def client(engine):
    app = create_app(engine, model_info(engine, name="local-test"), LIMITS)
    with TestClient(app) as c:
        yield c


@pytest.mark.slow
def test_nli_one_pair_and_a_batch_match_the_engine(client, engine, dev):
    r = client.post("/v1/nli", json={"premise": "Tom buys a big dog .", "hypothesis": "Tom buys a small dog ."})
    assert r.status_code == 200
    (one,) = r.json()["results"]
    assert one["label"] in ("entailment", "neutral", "contradiction")
    assert sum(one["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    pairs = [(a, b) for lang in ("en", "fr", "zh", "ar") for a, b, _ in dev[lang][:1]]
    r = client.post("/v1/nli", json={"pairs": [{"premise": a, "hypothesis": b} for a, b in pairs]})
    assert r.status_code == 200
    got = r.json()["results"]
    want = engine.predict([a for a, _ in pairs], [b for _, b in pairs])
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert np.allclose(
        [g["probabilities"]["neutral"] for g in got], [w["probabilities"]["neutral"] for w in want], atol=1e-5
    )


@pytest.mark.slow
def test_zero_shot_ranks_labels(client):
    body = {
        "text": "Tom buys a big dog .",
        "candidate_labels": ["large", "small", "old"],
        "hypothesis_template": "Tom buys a {} dog .",
    }
    r = client.post("/v1/zero-shot", json=body)
    assert r.status_code == 200
    labels = r.json()["labels"]
    assert sorted(x["label"] for x in labels) == ["large", "old", "small"]
    scores = [x["score"] for x in labels]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    multi = client.post("/v1/zero-shot", json={**body, "multi_label": True}).json()["labels"]
    assert all(0 <= x["score"] <= 1 for x in multi) and len(multi) == 3


@pytest.mark.slow
def test_model_health_ready_metrics_and_docs(client):
    info = client.get("/v1/model").json()
    assert info["name"] == "local-test" and info["labels"] == ["entailment", "neutral", "contradiction"]
    assert len(info["languages"]) == 15 and info["variant"] == "fp32"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True}
    client.post("/v1/nli", json={"premise": "a .", "hypothesis": "b ."})
    metrics = client.get("/metrics").text
    assert 'stilts_requests_total{endpoint="/v1/nli",status="200"}' in metrics
    assert "stilts_request_seconds_bucket" in metrics and "stilts_batch_pairs_count" in metrics
    docs = client.get("/docs")  # self-contained: works offline, a browser may load nothing else
    assert docs.status_code == 200 and docs.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in docs.text and "/v1/zero-shot" in docs.text and "ZeroShotRequest" in docs.text
    assert {"/v1/nli", "/v1/zero-shot", "/v1/model"} <= set(client.get("/openapi.json").json()["paths"])


BAD = [
    ("/v1/nli", b'{"premise": "a", ', 400, "body"),
    ("/v1/nli", {"premise": "a ."}, 422, "hypothesis"),
    ("/v1/nli", {"premise": 5, "hypothesis": "b"}, 422, "premise"),
    ("/v1/nli", {"premise": "  ", "hypothesis": "b"}, 422, "premise"),
    ("/v1/nli", {"premise": "x" * 201, "hypothesis": "b"}, 422, "premise"),
    ("/v1/nli", {"pairs": [{"premise": "a", "hypothesis": "b"}] * 5}, 413, "pairs"),
    ("/v1/nli", {"pairs": []}, 422, "pairs"),
    ("/v1/nli", {"pairs": [{"premise": "a", "hypothesis": ""}]}, 422, "pairs.0.hypothesis"),
    ("/v1/nli", {"pairs": [{"premise": "a"}]}, 422, "pairs.0.hypothesis"),
    ("/v1/nli", {"premise": "a", "hypothesis": "b", "extra": 1}, 422, "extra"),
    ("/v1/nli", {"premise": "a", "hypothesis": "b", "pairs": [{"premise": "a", "hypothesis": "b"}]}, 422, "pairs"),
    ("/v1/nli", {"premise": "a" * 150, "hypothesis": "b" * 150, "pad": "c" * 5000}, 413, "body"),
    ("/v1/zero-shot", {"text": "a", "candidate_labels": ["x", "y", "z", "w"]}, 413, "candidate_labels"),
    ("/v1/zero-shot", {"text": "a", "candidate_labels": []}, 422, "candidate_labels"),
    (
        "/v1/zero-shot",
        {"text": "a", "candidate_labels": ["x"], "hypothesis_template": "no slot"},
        422,
        "hypothesis_template",
    ),
    ("/v1/zero-shot", {"text": "", "candidate_labels": ["x"]}, 422, "text"),
    ("/v1/zero-shot", {"text": "a", "candidate_labels": "x"}, 422, "candidate_labels"),
]


@pytest.mark.slow
@pytest.mark.parametrize("path, body, status, field", BAD)
def test_bad_input_is_a_4xx_naming_the_field(client, path, body, status, field):
    kw = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    r = client.post(path, **kw)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and field.split(".")[-1] in r.json()["error"]
    ok = client.post("/v1/nli", json={"premise": "a .", "hypothesis": "b ."})
    assert ok.status_code == 200  # still serving


def test_micro_batcher_merges_concurrent_requests():
    calls = []

    def score(premises, hypotheses):
        calls.append(len(premises))
        time.sleep(0.01)
        return np.array([[float(len(p)), float(len(h)), 0.0] for p, h in zip(premises, hypotheses)])

    async def main():
        batcher = MicroBatcher(score, max_batch=8, max_wait_ms=20)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(["p" * i, "q"], ["h" * i, "r"]) for i in range(1, 11)))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert sum(calls) == 20 and len(calls) < 10 and max(calls) <= 10  # batched, each request whole
    for i, rows in enumerate(results, start=1):
        assert rows.tolist() == [[i, i, 0.0], [1.0, 1.0, 0.0]]  # every request got its own rows back


def _serve(args, env, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc


@pytest.mark.slow
def test_unknown_alias_at_start_up_is_a_clear_error(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from mlflow import MlflowClient

    MlflowClient(uri).search_registered_models()  # an existing, empty store (a missing one is its own error)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.run(
        [sys.executable, "-m", "serving", "--model-uri", "models:/stilts-xnli-onnx@nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Error: models:/stilts-xnli-onnx@nope: no such registered model version or alias" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bounded_load_on_loopback(exported):
    import httpx

    from benchmarks import loadgen

    port = free_port()
    proc = _serve(["--model-uri", str(exported[0])], dict(os.environ), port)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail(f"server did not become ready: {proc.stderr.read() if proc.poll() is not None else ''}")
        loadgen.run(f"http://127.0.0.1:{port}/v1/nli", 300, 32)  # warm-up: allocator pools, connections
        result = loadgen.run(f"http://127.0.0.1:{port}/v1/nli", 2000, 32, pid=proc.pid)
        assert result["errors"] == 0 and result["requests"] == 2000, result
        assert result["rss_growth"] < 0.10, result
        assert result["p50_ms"] <= result["p99_ms"]
        batches = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        count = float(next(x for x in batches.splitlines() if x.startswith("stilts_batch_pairs_count")).split()[-1])
        assert count < 2300  # concurrent requests shared onnxruntime calls
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serving_imports_neither_torch_nor_transformers():
    code = (
        "import sys, serving.app, serving.loader, serving.engine, serving.pyfunc, serving.__main__; "
        "print(sorted(m for m in ('torch', 'transformers', 'stilts_mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
