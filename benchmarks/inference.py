"""Inference: torch eager vs ONNX fp32 (onnxruntime-optimized graph) vs ONNX int8 (dynamic quantization),
at batch 1, 8 and 32 and sequence 128, on the xlmr-base-sized architecture and on the tiny model.

Every engine gets the same token ids (tokenization is not timed), runs on the same threads, and is timed
per call: median over repeated calls after warm-up.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from serving.engine import NLIEngine
from stilts_mlflow.export import export_model

log = logging.getLogger(__name__)
BATCHES = (1, 8, 32)
SEQ = 128


def _median_seconds(call, min_reps: int, budget_s: float) -> float:
    for _ in range(2):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < min_reps or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if len(times) >= 200:
            break
    return statistics.median(times)


def random_classifier_dir(out: Path, tokenizer, hidden: int, layers: int, heads: int, ff: int) -> Path:
    """A randomly initialised XLMRobertaForSequenceClassification (+ tokenizer) saved like a target model."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ff,
        max_position_embeddings=SEQ + 4,
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1,
        num_labels=3,
        id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
        label2id={"entailment": 0, "neutral": 1, "contradiction": 2},
    )
    XLMRobertaForSequenceClassification(cfg).eval().save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def bench_model(name: str, model_dir: Path, samples: dict, quick: bool) -> dict:
    """Export `model_dir` (parity-checked), then time the three engines on full-length batches."""
    from transformers import AutoModelForSequenceClassification

    with tempfile.TemporaryDirectory() as tmp:
        report = export_model(model_dir, Path(tmp) / "export", samples, max_length=SEQ)
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
        vocab = model.config.vocab_size
        reps, budget = (3, 0.5) if quick else (10, 3.0)
        inputs = {}
        for batch in BATCHES:
            ids = np.random.default_rng(batch).integers(4, vocab - 1, size=(batch, SEQ), dtype=np.int64)
            ids[:, 0], ids[:, -1] = 0, 2
            inputs[batch] = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        seconds: dict[int, dict[str, float]] = {batch: {} for batch in BATCHES}
        for batch, feeds in inputs.items():
            t_ids, t_mask = torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])

            def eager():
                with torch.inference_mode():
                    model(input_ids=t_ids, attention_mask=t_mask)

            seconds[batch]["torch_eager"] = _median_seconds(eager, reps, budget)
        # One session alive at a time, as in a server: an idle session's spinning threads would take the
        # cores from the one being timed (fp32 at batch 1 measured up to 1.6x slower beside an int8 session).
        for variant in ("fp32", "int8"):
            engine = NLIEngine.load(report.out_dir, variant, spinning=True)
            for batch, feeds in inputs.items():
                run = engine.session.run
                seconds[batch][f"onnx_{variant}"] = _median_seconds(lambda: run(["logits"], feeds), reps, budget)
            engine = run = None  # released before the next variant's session starts
        rows = []
        for batch in BATCHES:
            sec = seconds[batch]
            row = {
                "batch": batch,
                "seq": SEQ,
                **{f"{k}_ms": round(1000 * s, 2) for k, s in sec.items()},
                **{f"{k}_examples_per_s": round(batch / s, 1) for k, s in sec.items()},
                "onnx_fp32_speedup": round(sec["torch_eager"] / sec["onnx_fp32"], 2),
                "onnx_int8_speedup": round(sec["torch_eager"] / sec["onnx_int8"], 2),
            }
            log.info(
                "inference %s batch %d: eager %.1f ms, fp32 %.1f ms (x%.2f), int8 %.1f ms (x%.2f)",
                name,
                batch,
                row["torch_eager_ms"],
                row["onnx_fp32_ms"],
                row["onnx_fp32_speedup"],
                row["onnx_int8_ms"],
                row["onnx_int8_speedup"],
            )
            rows.append(row)
    return {
        "model": name,
        "parity_max_abs": max(report.parity_max_abs_diff.values()),
        "sizes_mb": {k: round(v / 1e6, 2) for k, v in report.sizes.items()},
        "by_batch": rows,
    }


def run(tiny_dir: Path, tokenizer, samples: dict, quick: bool) -> list[dict]:
    layers = 4 if quick else 12
    out = [bench_model("tiny", tiny_dir, samples, quick)]
    with tempfile.TemporaryDirectory() as tmp:
        base = random_classifier_dir(Path(tmp) / "base", tokenizer, 768, layers, 12, 3072)
        out.append(
            bench_model(
                f"xlmr-base-sized ({layers} of 12 layers)" if layers != 12 else "xlmr-base-sized", base, samples, quick
            )
        )
    return out
