"""One bad request never hurts another: texts the tokenizer cannot take are refused (422 naming the field)
before they reach a micro-batch, and a request that still fails inside a merged onnxruntime call fails
alone (the poison-batch test: every valid request batched with it gets 200 and the probabilities it gets
alone)."""

import asyncio
import json
import logging

import httpx
import numpy as np
import pytest

from serving.app import create_app, model_info
from serving.batching import MicroBatcher, ScoringError
from serving.engine import NLIEngine
from serving.schemas import Limits

LIMITS = Limits(max_pairs=4, max_labels=3, max_chars=200, max_body_bytes=8192)


@pytest.fixture(scope="module")
def engine(exported):
    return NLIEngine.load(exported[0])


class Flaky:
    """The engine, except that scoring any batch holding a POISON premise raises, as the tokenizer does on
    input that validation let through; counts the merged calls that mixed poison with valid pairs."""

    def __init__(self, engine):
        self.engine, self.mixed = engine, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def logits(self, premises, hypotheses):
        poison = ["POISON" in p for p in premises]
        if any(poison):
            self.mixed += not all(poison)
            raise TypeError("TextInputSequence must be str")
        return self.engine.logits(premises, hypotheses)


async def _concurrently(app, requests):
    """Send every (path, raw body) at once through the app's lifespan; return the responses in order."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await asyncio.gather(
            *(c.post(path, content=body, headers={"content-type": "application/json"}) for path, body in requests)
        )


def _valid(dev):
    return [(a, b) for lang in ("en", "fr", "zh", "ar", "hi", "ru") for a, b, _ in dev[lang][:4]]


def _alone(engine, pairs):
    return [engine.predict([a], [b])[0] for a, b in pairs]


def _assert_same(response, want):
    assert response.status_code == 200, response.text
    (got,) = response.json()["results"]
    assert got["label"] == want["label"]
    assert np.allclose(
        [got["probabilities"][k] for k in want["probabilities"]], list(want["probabilities"].values()), atol=1e-5
    )


# Texts the JSON parser accepts and the tokenizer rejects: lone UTF-16 surrogate escapes, in every text field.
POISON_TEXT = [
    ("/v1/nli", '{"premise": "a \\ud800 b", "hypothesis": "c ."}', "premise"),
    ("/v1/nli", '{"premise": "a .", "hypothesis": "\\udfff"}', "hypothesis"),
    (
        "/v1/nli",
        '{"pairs": [{"premise": "a", "hypothesis": "b"}, {"premise": "a", "hypothesis": "x\\udc00"}]}',
        "pairs.1.hypothesis",
    ),
    ("/v1/zero-shot", '{"text": "\\ud83d", "candidate_labels": ["x"]}', "text"),
    ("/v1/zero-shot", '{"text": "a .", "candidate_labels": ["x", "\\ud83dy"]}', "candidate_labels.1"),
    (
        "/v1/zero-shot",
        '{"text": "a .", "candidate_labels": ["x"], "hypothesis_template": "{} \\udbff"}',
        "hypothesis_template",
    ),
]


@pytest.mark.slow
def test_poison_texts_are_422_and_valid_requests_batched_with_them_are_unharmed(engine, dev, caplog):
    pairs = _valid(dev)
    want = _alone(engine, pairs)
    valid = [("/v1/nli", json.dumps({"premise": a, "hypothesis": b})) for a, b in pairs]
    poison = [(path, body) for path, body, _ in POISON_TEXT] * 2
    mixed = [x for i, v in enumerate(valid) for x in ([v, poison[i]] if i < len(poison) else [v])]
    app = create_app(engine, model_info(engine), LIMITS, max_batch=8, max_wait_ms=30)
    with caplog.at_level(logging.INFO):
        responses = asyncio.run(_concurrently(app, mixed))
    by_body = dict(zip((b for _, b in mixed), responses))
    for (_, body), w in zip(valid, want):
        _assert_same(by_body[body], w)
    for path, body, field in POISON_TEXT:
        r = by_body[body]
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field and "surrogate" in r.json()["error"]
    assert "Traceback" not in caplog.text


@pytest.mark.slow
def test_a_request_failing_inside_a_full_batch_fails_alone(engine, dev, caplog):
    pairs = _valid(dev)
    want = _alone(engine, pairs)
    valid = [("/v1/nli", json.dumps({"premise": a, "hypothesis": b})) for a, b in pairs]
    poison = [("/v1/nli", json.dumps({"premise": f"POISON {i} .", "hypothesis": "b ."})) for i in range(8)]
    mixed = [x for i, v in enumerate(valid) for x in ([v, poison[i // 3]] if i % 3 == 0 else [v])]
    flaky = Flaky(engine)
    app = create_app(flaky, model_info(engine), LIMITS, max_batch=8, max_wait_ms=30)
    with caplog.at_level(logging.INFO):
        responses = asyncio.run(_concurrently(app, mixed))
    assert flaky.mixed >= 3  # poison really shared merged calls with valid requests
    by_body = dict(zip((b for _, b in mixed), responses))
    for (_, body), w in zip(valid, want):
        _assert_same(by_body[body], w)
    for _, body in poison:
        r = by_body[body]
        assert r.status_code == 500 and r.json() == {
            "error": "internal error while scoring this request",
            "field": None,
        }
    assert "Traceback" not in caplog.text
    assert caplog.text.count("scoring failed") == len(poison)  # one line per failed request


def test_micro_batcher_isolates_a_failing_request():
    def score(premises, hypotheses):
        if "bad" in premises:
            raise ValueError("cannot score 'bad'")
        return np.array([[float(len(p)), 0.0, 0.0] for p in premises])

    async def main():
        batcher = MicroBatcher(score, max_batch=16, max_wait_ms=20)
        batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(["bad" if i % 4 == 0 else "p" * i], ["h"]) for i in range(12)), return_exceptions=True
        )
        await batcher.stop()
        return results

    for i, r in enumerate(asyncio.run(main())):
        if i % 4 == 0:
            assert isinstance(r, ScoringError) and "cannot score 'bad'" in str(r)
        else:
            assert r.tolist() == [[float(i), 0.0, 0.0]]
