"""Side-by-side performance: each number is a ratio measured in one run on one machine.

    python -m benchmarks.run [--quick] --out results.json

writes results.json and results.md (the markdown table README shows). Sections: training (our loop vs
Hugging Face Trainer, MFU), mlm_softmax (language vs full MLM softmax), inference (torch eager vs ONNX fp32 vs ONNX int8), serving (serving/ vs
`mlflow models serve`), study (cost vs number of pipelines, cache-hit rerun). Goals are reported, never
asserted.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import click

from benchmarks import machine
from benchmarks.report import markdown

log = logging.getLogger("benchmarks")
SECTIONS = ("training", "mlm_softmax", "inference", "serving", "study", "ray")


def tiny_model(model_uri: str | None, tokenizer, work: Path) -> tuple[Path, str]:
    """The tiny classifier to time: `model_uri` (models:/... or a directory), else a tiny-architecture model
    with random weights (speed depends on the architecture only)."""
    from benchmarks.inference import random_classifier_dir
    from stilts_mlflow.presets import get_preset

    if model_uri:
        if model_uri.startswith("models:/"):
            import mlflow

            return Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(work / "champion"))), model_uri
        return Path(model_uri), model_uri
    m = get_preset("tiny").model
    return (
        random_classifier_dir(work / "tiny", tokenizer, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size),
        "tiny architecture, random weights",
    )


@click.command()
@click.option("--quick", is_flag=True, help="Fewer steps, repetitions and pipelines (about 3.5 minutes on 2 cores).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="benchmarks/results.json",
    show_default=True,
    help="JSON results; the markdown table goes next to it (.md).",
)
@click.option("--sections", default=",".join(SECTIONS), show_default=True, help="Comma-separated subset to run.")
@click.option(
    "--model-uri",
    default=None,
    help="Tiny model for inference and serving: models:/stilts-xnli@champion (tracking server from "
    "MLFLOW_TRACKING_URI) or a target-model directory. Default: the tiny architecture, random weights.",
)
def main(quick: bool, out: str, sections: str, model_uri: str | None) -> None:
    """Run the benchmarks and write JSON plus a markdown table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("stilts_mlflow", "transformers", "mlflow", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    chosen = [s.strip() for s in sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}", param_hint="--sections"
        )
    start = time.perf_counter()
    results: dict = {"quick": quick, "machine": machine.info(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    from stilts_mlflow.context import Context
    from stilts_mlflow.presets import get_preset

    ctx = Context(get_preset("tiny"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "training" in chosen:
            from benchmarks import training

            rows = training.run(ctx, quick)
            # The peak once more after the cases, and the higher one kept: a VM slowed while the first was
            # measured (69 GFLOP/s against 300 in one CI run) would otherwise put MFU above 100%.
            m = results["machine"]
            m["matmul_peak_gflops_samples"] = [m["matmul_peak_gflops"], round(machine.matmul_peak_flops() / 1e9, 1)]
            m["matmul_peak_gflops"] = max(m["matmul_peak_gflops_samples"])
            results["training"] = training.add_mfu(rows, m["matmul_peak_gflops"] * 1e9)
        if "mlm_softmax" in chosen:
            from benchmarks import mlm_softmax

            results["mlm_softmax"] = mlm_softmax.run(ctx, quick)
        if "inference" in chosen or "serving" in chosen:
            from benchmarks import inference
            from stilts_mlflow.export import export_model
            from stilts_mlflow.export import parity_samples, xnli_dev

            model_dir, source = tiny_model(model_uri, ctx.tokenizer, tmp)
            results["tiny_model"] = source
            samples = {lang: pairs[:4] for lang, pairs in parity_samples(xnli_dev("tiny")).items()}
            if "inference" in chosen:
                results["inference"] = inference.run(model_dir, ctx.tokenizer, samples, quick)
            if "serving" in chosen:
                from benchmarks import serving

                export_model(model_dir, tmp / "export", samples)
                results["serving"] = serving.run(tmp / "export", quick)
        if "study" in chosen:
            from benchmarks import study

            results["study"] = study.run(quick)
        if "ray" in chosen:
            from benchmarks import ray_overhead

            results["ray"] = ray_overhead.run(quick)
    results["seconds"] = round(time.perf_counter() - start, 1)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1))
    table = markdown(results)
    out_path.with_suffix(".md").write_text(table)
    click.echo(table)
    log.info("wrote %s and %s in %.0f s", out_path, out_path.with_suffix(".md"), results["seconds"])


if __name__ == "__main__":
    main()
