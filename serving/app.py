"""The HTTP API: multilingual NLI and zero-shot classification on the exported ONNX model.

POST /v1/nli, POST /v1/zero-shot, GET /v1/model, /healthz, /readyz, /metrics (Prometheus), /docs.
Every user mistake is a 4xx JSON body `{"error": ..., "field": ...}`; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import unicodedata
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from serving import docs
from serving.batching import MicroBatcher, ScoringError
from serving.engine import NLIEngine, softmax
from serving.schemas import (
    ERROR_RESPONSES,
    Limits,
    NLIRequest,
    NLIResponse,
    Prediction,
    RankedLabel,
    ZeroShotRequest,
    ZeroShotResponse,
)

log = logging.getLogger("serving")


class UserError(Exception):
    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


def _error(status: int, message: str, field: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": f"{field}: {message}", "field": field}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: the whole body is read here, however it is framed (content-length or chunked), and
    one over `limit` bytes is answered 413 before any of it reaches the app (FastAPI would turn an error
    raised while it reads into a 400). A compressed body is 415: the server takes plain JSON only. With
    `timeout`, a body that stops arriving for that many seconds is answered 408 (a slow client holds no
    worker for long)."""

    def __init__(self, app, limit: int, timeout: float | None = None):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"", b"identity"):
            return await _error(
                415, f"{encoding.decode('latin-1')!r} is not accepted; send the JSON uncompressed", "content-encoding"
            )(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await _error(400, "must be a non-negative integer", "content-length")(scope, receive, send)
            if int(length) > self.limit:
                return await _error(
                    413, f"request body of {int(length)} bytes is over the limit of {self.limit}", "body"
                )(scope, receive, send)
        chunks, seen = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                return await _error(408, f"no body data for {self.timeout:g} s", "body")(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await _error(413, f"request body is over the limit of {self.limit} bytes", "body")(
                    scope, receive, send
                )
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


class Observe:
    """ASGI middleware: count requests by endpoint and status and time them. (Plain ASGI: Starlette's
    @app.middleware("http") wraps every request in anyio task groups, a fifth of the server's CPU under load.)
    The endpoint label is one of the app's routes, or `unmatched` for any other path: anonymous traffic to
    made-up paths adds no series."""

    def __init__(self, app, requests: Counter, latency: Histogram, routes: set[str]):
        self.app, self.requests, self.latency, self.routes = app, requests, latency, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def observed(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            endpoint = scope["path"] if scope["path"] in self.routes else "unmatched"
            self.requests.labels(endpoint, str(status[0])).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - start)


def _text(field: str, value: str, limits: Limits) -> str:
    """A request text as the tokenizer gets it: valid Unicode (JSON's `\\ud800` escapes can smuggle in
    unpaired surrogates, which the tokenizer rejects inside a batch), NFC-normalised, non-empty, bounded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(
            field,
            f"holds an unpaired UTF-16 surrogate (U+{ord(value[exc.start]):04X}) at character "
            f"{exc.start}; send valid Unicode",
        ) from None
    value = unicodedata.normalize("NFC", value)
    if not value.strip():
        raise UserError(field, "must be a non-empty string")
    if len(value) > limits.max_chars:
        raise UserError(field, f"is {len(value)} characters; the limit is {limits.max_chars}")
    return value


def create_app(
    engine: NLIEngine,
    info: dict,
    limits: Limits = Limits(),
    max_batch: int = 32,
    max_wait_ms: float = 0.0,
    body_timeout: float | None = None,
) -> FastAPI:
    registry = CollectorRegistry()
    requests = Counter("stilts_requests", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram(
        "stilts_request_seconds",
        "Request latency",
        ["endpoint"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    batch_sizes = Histogram(
        "stilts_batch_pairs", "Pairs per onnxruntime call", registry=registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128)
    )
    batcher = MicroBatcher(engine.logits, max_batch=max_batch, max_wait_ms=max_wait_ms, on_batch=batch_sizes.observe)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        await batcher.submit(["warm up ."], ["warm up ."])
        state["ready"] = True
        # Start-up objects (model, tokenizer, app) move out of the collector's sight, and young-generation
        # collections run every 100k allocations instead of 700: at concurrency 32 the default collector's
        # pauses made p99 3.5x p50; with this, 1.3x (benchmarks/serving.py).
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        yield
        state["ready"] = False
        await batcher.stop()

    # redirect_slashes=False: a trailing slash is a 404, not a 307 whose Location echoes the client's Host.
    app = FastAPI(
        title="stilts-xnli",
        version=str(info.get("version") or "local"),
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,  # /docs below: no CDN
        description="Zero-shot cross-lingual NLI (XNLI's 15 languages) on the exported ONNX model.",
    )
    routes: set[str] = set()  # filled once every route is defined
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes, timeout=body_timeout)
    app.add_middleware(Observe, requests=requests, latency=latency, routes=routes)  # outermost: sees the 413s too

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        """Starlette's own 4xx (unknown path, wrong method, a body FastAPI cannot parse) in the JSON shape."""
        path = request.url.path
        if exc.status_code == 404:
            return _error(404, f"no endpoint {path[:200]!r}", "path")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {path}", "method", exc.headers)
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {str(cause)[:200]}" if cause is not None else str(exc.detail)
        if exc.status_code == 400:
            return _error(400, f"invalid JSON ({reason})", "body")
        return _error(exc.status_code, reason, "body")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, f"invalid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", "body")
        field = ".".join(str(x) for x in first.get("loc", ())[1:]) or "body"
        return _error(422, first.get("msg", "invalid"), field)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(ScoringError)
    async def scoring_error(request: Request, exc: ScoringError):
        # Validation admits only what the tokenizer takes, so this is the server's fault: one log line, and
        # the batcher has already kept it from the other requests of its batch.
        log.error("%s %s: scoring failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": "internal error while scoring this request", "field": None}, status_code=500)

    def predictions(logits: np.ndarray) -> list[Prediction]:
        probs = softmax(logits)
        return [
            Prediction(
                label=engine.labels[int(p.argmax())], probabilities={lab: float(x) for lab, x in zip(engine.labels, p)}
            )
            for p in probs
        ]

    @app.post("/v1/nli", response_model=NLIResponse, responses=ERROR_RESPONSES)
    async def nli(body: NLIRequest) -> NLIResponse:
        """Label one pair (`premise`, `hypothesis`) or a batch (`pairs`): entailment, neutral or contradiction."""
        if body.pairs is not None:
            if body.premise is not None or body.hypothesis is not None:
                raise UserError("pairs", "give either pairs or premise/hypothesis, not both")
            if not body.pairs:
                raise UserError("pairs", "must hold at least one pair")
            if len(body.pairs) > limits.max_pairs:
                raise UserError("pairs", f"{len(body.pairs)} pairs; the limit is {limits.max_pairs}", 413)
            premises = [_text(f"pairs.{i}.premise", p.premise, limits) for i, p in enumerate(body.pairs)]
            hypotheses = [_text(f"pairs.{i}.hypothesis", p.hypothesis, limits) for i, p in enumerate(body.pairs)]
        else:
            for name in ("premise", "hypothesis"):
                if getattr(body, name) is None:
                    raise UserError(name, "field required (or give pairs)")
            premises, hypotheses = (
                [_text("premise", body.premise, limits)],
                [_text("hypothesis", body.hypothesis, limits)],
            )
        return NLIResponse(results=predictions(await batcher.submit(premises, hypotheses)))

    @app.post("/v1/zero-shot", response_model=ZeroShotResponse, responses=ERROR_RESPONSES)
    async def zero_shot(body: ZeroShotRequest) -> ZeroShotResponse:
        """Rank candidate labels for a text: each label fills the hypothesis template, scored by entailment."""
        text = _text("text", body.text, limits)
        if not body.candidate_labels:
            raise UserError("candidate_labels", "must hold at least one label")
        if len(body.candidate_labels) > limits.max_labels:
            raise UserError(
                "candidate_labels", f"{len(body.candidate_labels)} labels; the limit is {limits.max_labels}", 413
            )
        if "{}" not in body.hypothesis_template:
            raise UserError("hypothesis_template", "must contain '{}' where the label goes")
        labels = [_text(f"candidate_labels.{i}", x, limits) for i, x in enumerate(body.candidate_labels)]
        hypotheses = [_text("hypothesis_template", body.hypothesis_template.replace("{}", x), limits) for x in labels]
        logits = await batcher.submit([text] * len(labels), hypotheses)
        ent, con = engine.labels.index("entailment"), engine.labels.index("contradiction")
        if body.multi_label:
            scores = softmax(logits[:, [con, ent]])[:, 1]
        else:
            scores = softmax(logits[:, ent][None, :])[0]
        ranked = sorted(zip(labels, scores.tolist()), key=lambda x: -x[1])
        return ZeroShotResponse(text=text, labels=[RankedLabel(label=x, score=s) for x, s in ranked])

    @app.get("/v1/model")
    async def model() -> dict:
        """Which model answers: registry name, version and alias, languages, labels, dev scores."""
        return info

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        return {"ready": True} if state["ready"] else JSONResponse({"ready": False}, status_code=503)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs", include_in_schema=False)
    async def documentation() -> HTMLResponse:
        return HTMLResponse(docs.render(app.openapi()), headers={"content-security-policy": docs.CSP})

    routes.update(route.path for route in app.routes)
    return app


def model_info(engine: NLIEngine, tags: dict[str, str] | None = None, **extra) -> dict:
    tags = tags or {}
    dev = {k.removeprefix("dev_"): float(v) for k, v in tags.items() if k.startswith("dev_")}
    return {
        **extra,
        "variant": engine.variant,
        "labels": list(engine.labels),
        "languages": engine.meta.get("languages", []),
        "max_length": engine.max_length,
        "subset": tags.get("subset"),
        "k": tags.get("k"),
        "preset": tags.get("preset"),
        "dev_accuracy": dev,
        "export": {k: v for k, v in tags.items() if k.startswith(("parity", "dev.", "int8"))},
    }
