"""Every 4xx the server sends is the documented JSON `{"error", "field"}`, whatever went wrong (parse
errors, unknown paths and methods, bodies over the limit however framed), and anonymous traffic cannot
grow the metrics: unknown paths share one label."""

import gzip
import json
import os

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from netutil import serve
from serving.app import create_app, model_info
from serving.engine import NLIEngine
from serving.schemas import Limits

LIMITS = Limits(max_pairs=4, max_labels=3, max_chars=200, max_body_bytes=16384)
JSON = {"content-type": "application/json"}
UNKNOWN_PATHS = 3000


@pytest.fixture(scope="module")
def client(exported):
    engine = NLIEngine.load(exported[0])
    with TestClient(create_app(engine, model_info(engine), LIMITS), follow_redirects=False) as c:
        yield c


def _chunks(total: int, size: int = 1000):
    for _ in range(total // size):
        yield b" " * size


# (method, path, request keyword arguments, status, field)
CASES = [
    ("POST", "/v1/nli", {"content": b'{"premise": "\xff\xfe", "hypothesis": "b"}', "headers": JSON}, 400, "body"),
    (
        "POST",
        "/v1/nli",
        {"content": b'{"premise": ' + b"9" * 5000 + b', "hypothesis": "b"}', "headers": JSON},
        400,
        "body",
    ),
    ("POST", "/v1/nli", {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON}, 400, "body"),
    ("POST", "/v1/nli", {"content": b"{" * 6000, "headers": JSON}, 400, "body"),
    ("POST", "/v1/nli", {"content": b'{"premise": NaN}', "headers": JSON}, 422, "premise"),
    ("POST", "/v1/nli", {"content": b"[]", "headers": JSON}, 422, "body"),
    ("POST", "/v1/nli", {"content": b"null", "headers": JSON}, 422, "body"),
    ("POST", "/v1/nli", {"content": b"premise=a", "headers": {"content-type": "text/plain"}}, 422, "body"),
    (
        "POST",
        "/v1/nli",
        {
            "content": gzip.compress(b'{"premise": "a", "hypothesis": "b"}'),
            "headers": {**JSON, "content-encoding": "gzip"},
        },
        415,
        "content-encoding",
    ),
    ("POST", "/v1/nli", {"content": _chunks(20_000), "headers": JSON}, 413, "body"),  # chunked, no length
    ("POST", "/v1/nli", {"content": b" " * 20_000, "headers": JSON}, 413, "body"),
    (
        "POST",
        "/v1/zero-shot",
        {"json": {"text": "a", "candidate_labels": ["x"], "multi_label": "yes"}},
        422,
        "multi_label",
    ),
    ("POST", "/v1/zero-shot", {"json": {"text": "a", "candidate_labels": ["x"], "multi_label": 1}}, 422, "multi_label"),
    ("POST", "/v1/nli", {"json": {"premise": ["a"], "hypothesis": "b"}}, 422, "premise"),
    ("POST", "/v1/nli/", {"json": {"premise": "a", "hypothesis": "b"}}, 404, "path"),
    ("GET", "/v1/model/", {}, 404, "path"),
    ("GET", "/nope", {}, 404, "path"),
    ("GET", "/v1/nli", {}, 405, "method"),
    ("DELETE", "/metrics", {}, 405, "method"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, path, kwargs, status, field", CASES, ids=[f"{c[0]} {c[1]} {c[3]} {c[4]} #{i}" for i, c in enumerate(CASES)]
)
def test_every_4xx_is_the_json_error_shape(client, method, path, kwargs, status, field):
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "field"} and body["field"] == field and body["error"].startswith(f"{field}: ")
    assert "location" not in r.headers
    assert client.post("/v1/nli", json={"premise": "a .", "hypothesis": "b ."}).status_code == 200


def _series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("stilts_request"))


@pytest.mark.slow
def test_unknown_paths_share_one_metrics_label(exported):
    """Thousands of made-up paths on a real server: no new series, /metrics and the server's RSS stay put."""
    proc, url = serve(["--model-uri", str(exported[0])])
    try:
        server = psutil.Process(proc.pid)
        with httpx.Client(base_url=url) as c:
            for i in range(300):  # warm-up: allocator pools, connections, the unmatched series, /metrics' own
                c.get(f"/warm/{i}")
            c.get("/metrics")
            before, rss = c.get("/metrics").text, server.memory_info().rss
            for i in range(UNKNOWN_PATHS):
                method = ("GET", "POST", "PUT")[i % 3]
                assert c.request(method, f"/made-up/{i}/{'x' * (i % 50)}?q={i}").status_code == 404
            after = c.get("/metrics").text
        growth = server.memory_info().rss - rss
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert _series(after) == _series(before) and len(after) < len(before) + 200, (len(before), len(after))
    assert 'endpoint="unmatched",status="404"' in after and "/made-up" not in after
    assert growth < 4 * 2**20, growth
    counted = sum(
        float(line.split()[-1])
        for line in after.splitlines()
        if line.startswith('stilts_requests_total{endpoint="unmatched"')
    )
    assert counted == UNKNOWN_PATHS + 300
