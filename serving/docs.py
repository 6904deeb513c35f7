"""/docs as one static HTML page rendered from the app's OpenAPI schema: no scripts, no stylesheets, no
CDN (FastAPI's Swagger UI loads its JavaScript from a CDN and is blank offline). /openapi.json stays
for tools."""

from __future__ import annotations

import html
import json

# The page may load nothing at all: a browser enforces that it is self-contained.
CSP = "default-src 'none'; style-src 'unsafe-inline'"


def render(openapi: dict) -> str:
    esc = html.escape
    info = openapi.get("info", {})
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(info.get('title', 'API'))} docs</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;"
        "padding:.5em;overflow:auto}</style></head><body>",
        f"<h1>{esc(info.get('title', 'API'))} {esc(str(info.get('version', '')))}</h1>",
        f"<p>{esc(info.get('description', ''))}</p>",
        '<p>Every client mistake is a 4xx JSON body <code>{"error": "&lt;field&gt;: what is wrong", '
        '"field": "&lt;field&gt;"}</code>. The machine-readable schema is <a href=\'/openapi.json\'>'
        "/openapi.json</a>.</p>",
    ]
    for path, methods in openapi.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{esc(method.upper())} {esc(path)}</code></h2>")
            parts.append(f"<p>{esc(op.get('description') or op.get('summary') or '')}</p>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                parts.append(f"<p>Request body: <code>{esc(body.get('$ref', '').rsplit('/', 1)[-1])}</code></p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in openapi.get("components", {}).get("schemas", {}).items():
        parts.append(f"<h3 id='{esc(name)}'>{esc(name)}</h3><pre>{esc(json.dumps(schema, indent=1))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
