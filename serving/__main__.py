"""`python -m serving --model-uri models:/stilts-xnli-onnx@champion --port 8080` (torch-free)."""

from __future__ import annotations

import logging
import sys

import click

from serving.schemas import Limits


@click.command()
@click.option(
    "--model-uri",
    default="models:/stilts-xnli-onnx@champion",
    show_default=True,
    help="models:/NAME@ALIAS, models:/NAME/VERSION (tracking server from MLFLOW_TRACKING_URI) or a directory.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 in containers).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--variant",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="Which exported graph answers.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Most pairs per onnxruntime call (micro-batching of concurrent requests).",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Extra wait for more requests once the first arrived. 0: a batch is whatever queued while the "
    "previous one ran (lowest latency; measured best up to concurrency 32).",
)
@click.option("--max-pairs", type=click.IntRange(min=1), default=Limits.max_pairs, show_default=True)
@click.option("--max-chars", type=click.IntRange(min=1), default=Limits.max_chars, show_default=True)
@click.option("--max-body-bytes", type=click.IntRange(min=1024), default=Limits.max_body_bytes, show_default=True)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds a connection has to send a complete request head (after opening or its last response).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a request body may stall before the request is answered 408.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--http",
    "parser",
    type=click.Choice(["auto", "httptools", "h11"]),
    default="auto",
    show_default=True,
    help="HTTP/1.1 parser: httptools (C) when installed, else h11 (pure Python).",
)
def main(
    model_uri,
    host,
    port,
    variant,
    max_batch,
    max_wait_ms,
    max_pairs,
    max_chars,
    max_body_bytes,
    header_timeout,
    body_timeout,
    keep_alive_timeout,
    parser,
):
    """Serve multilingual NLI over HTTP (FastAPI + onnxruntime)."""
    import uvicorn

    from serving.app import create_app
    from serving.engine import IntegrityError
    from serving.loader import ModelNotFound, load
    from serving.timeouts import with_header_timeout

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        engine, info = load(model_uri, variant)
    except (ModelNotFound, IntegrityError, FileNotFoundError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    limits = Limits(max_pairs=max_pairs, max_chars=max_chars, max_body_bytes=max_body_bytes)
    app = create_app(engine, info, limits, max_batch=max_batch, max_wait_ms=max_wait_ms, body_timeout=body_timeout)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=with_header_timeout(header_timeout, parser),
        timeout_keep_alive=keep_alive_timeout,
    )


if __name__ == "__main__":
    main()
