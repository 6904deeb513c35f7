"""Spot checks a person can do: GET /v1/examples (labelled test pairs shipped in the export) and GET / (one
static page that draws them, scores them through /v1/nli and shows predictions next to gold labels).

The page is `serving/static/index.html`, one self-contained file: no build step, nothing fetched but this
server's own API, so it works offline. Its Content-Security-Policy allows exactly its inline script and
style (by sha256) and requests to this origin. Being a client of the public API, it runs under the same
limits, metrics and JSON errors as any other client.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

from serving import examples
from serving.engine import NLIEngine
from serving.errors import UserError
from serving.schemas import ERROR_RESPONSES, ExamplesResponse, Limits

PAGE = resources.files("serving").joinpath("static/index.html").read_bytes()
MAX_SEED = 2**63 - 1


def _csp(page: bytes) -> str:
    """Allow the page's own inline <script> and <style> blocks by hash, and fetches to this origin only."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rb"<%s>(.*?)</%s>" % (tag.encode(), tag.encode()), page, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in blocks)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


CSP = _csp(PAGE)
PAGE_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def add_routes(app: FastAPI, engine: NLIEngine, limits: Limits) -> None:
    """GET /v1/examples and GET / on `app` itself (its routes are what the metrics label requests by)."""

    @app.get("/v1/examples", response_model=ExamplesResponse, responses=ERROR_RESPONSES)
    async def draw_examples(lang: str = "all", n: int = 5, seed: int | None = None) -> ExamplesResponse:
        """Draw `n` labelled test pairs (gold label included) of one language, or of all pooled (`lang=all`).
        The same lang, n and seed draw the same pairs; without a seed the server picks one and returns it.
        At most the server's --max-pairs, so that one /v1/nli request scores a draw."""
        shipped = engine.examples
        if shipped is None:
            raise UserError(
                "path",
                f"this export has no examples ({examples.EXAMPLES_FILE} is not in its manifest: "
                "it was made before exports shipped them); export the model again to add them",
                404,
            )
        pool = shipped["examples"]
        if lang != "all" and lang not in pool:
            raise UserError("lang", f"no examples for {lang[:20]!r}; this export has all, {', '.join(pool)}")
        available = sum(map(len, pool.values())) if lang == "all" else len(pool[lang])
        if not 1 <= n <= limits.max_pairs:
            raise UserError("n", f"is {n}; draw between 1 and {limits.max_pairs} pairs (the server's --max-pairs)")
        if n > available:
            raise UserError("n", f"is {n}, but this export has {available} examples for {lang!r}")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif not 0 <= seed <= MAX_SEED:
            raise UserError("seed", f"must be between 0 and {MAX_SEED}")
        return ExamplesResponse(
            lang=lang,
            seed=seed,
            split=shipped.get("split"),
            synthetic=shipped["synthetic"],
            examples=examples.draw(shipped, lang, n, seed),
        )

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
