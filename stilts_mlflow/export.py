"""ONNX export of a target model directory (an `XLMRobertaForSequenceClassification` save).

One call writes the directory `serving/engine.py` loads: the torch.onnx graph (opset 18, dynamic batch
and sequence axes), an onnxruntime-optimized fp32 graph, an int8 dynamically quantized graph, the
tokenizer, metadata and sha256 checksums. Then it checks the export against torch: fp32 logits must
match within PARITY_TOLERANCE on a sample of every language (else `ParityError`), and the int8 graph's
XNLI dev accuracy is measured next to fp32's.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from serving import examples as spot_examples
from serving.engine import CHECKSUM_FILE, META_FILE, NLIEngine, sha256_file

log = logging.getLogger(__name__)

OPSET = 18
# fp32 export bugs show as differences of 1e-2 and more. Trained tiny models measured 2e-7 to 1e-6; a model
# still at chance (its features nearly constant, so LayerNorm amplifies rounding) measured 1.2e-4 on an AMD
# EPYC, with onnxruntime's kernels summing in another order than torch's.
PARITY_TOLERANCE = 1e-3
INT8_TOLERANCE_POINTS = 0.5  # int8 dev average within this many accuracy points of fp32 (reported either way)
VARIANTS = {"fp32": "onnx/model.opt.onnx", "fp32-raw": "onnx/model.onnx", "int8": "onnx/model.int8.onnx"}

Pairs = list[tuple[str, str]]
SERVING_DIR = Path(__file__).resolve().parent.parent / "serving"
PARITY_SAMPLE = 16  # dev pairs per language for the torch/ONNX parity check
SUMMARY_MARKERS = ("parity", "accuracy.avg", "delta", "size", "seconds")  # the export metrics worth a glance


def summary(metrics: dict[str, float]) -> dict[str, float]:
    """The export metrics that registry tags and the `export` command show: parity, averages, sizes, times."""
    return {k: v for k, v in metrics.items() if any(m in k for m in SUMMARY_MARKERS)}


class ParityError(RuntimeError):
    """The ONNX graph's logits differ from torch's by more than PARITY_TOLERANCE."""


@dataclass
class ExportReport:
    out_dir: str
    parity_max_abs_diff: dict[str, float]  # fp32 variant -> max |logit difference| vs torch
    parity_pairs: int
    dev_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> lang/avg -> acc
    int8_delta_points: float | None = None  # 100 * (int8 - fp32) dev average
    sizes: dict[str, int] = field(default_factory=dict)  # variant -> bytes
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        out = {f"export/parity_max_abs_diff.{v}": d for v, d in self.parity_max_abs_diff.items()}
        out.update({f"export/size_bytes.{v}": float(s) for v, s in self.sizes.items()})
        for variant, accs in self.dev_accuracy.items():
            out.update({f"export/dev/{variant}/accuracy.{lang}": a for lang, a in accs.items()})
        if self.int8_delta_points is not None:
            out["export/int8_delta_points"] = self.int8_delta_points
        out["export/seconds"] = self.seconds
        return out


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints its progress and onnxruntime's quantizer logs every tensor on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _torch_export(model, path: Path, example: dict[str, torch.Tensor]) -> None:
    """TorchScript export of the model with transformers' eager attention. That graph is the one
    onnxruntime's BERT optimizer fuses into its Attention kernel; the dynamo exporter's graph (with eager or
    SDPA attention) is not matched, and without the fused kernel onnxruntime ran the tiny model at batch 8
    slower than torch eager (x0.85 vs x1.6 with fusion; benchmarks/inference.py)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        torch.onnx.export(
            model,
            (example["input_ids"], example["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    finally:
        model.set_attn_implementation(previous)


def _optimize(raw: Path, out: Path, num_heads: int, hidden_size: int) -> None:
    """onnxruntime's BERT fusions (Attention with a mask index, BiasGelu) except SkipLayerNormalization: its
    CPU kernel (onnxruntime 1.32) took ~1.3 ms a node on the tiny model at batch 32 (1 thread) where Add +
    LayerNormalization take ~0.3 ms, and kept the fp32 graph behind torch eager (benchmarks/README.md)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, optimization_options=options
    )
    optimized.save_model_to_file(str(out))


def _quantize(raw: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)


def torch_logits(model, tokenizer, pairs: Pairs, max_length: int, batch_size: int = 64) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            a, b = zip(*pairs[i : i + batch_size])
            enc = tokenizer(list(a), list(b), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            out.append(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy())
    return np.concatenate(out)


def accuracy_by_language(engine: NLIEngine, dev: dict[str, list[tuple[str, str, str]]]) -> dict[str, float]:
    accs = {}
    for lang, rows in dev.items():
        logits = engine.logits([r[0] for r in rows], [r[1] for r in rows])
        gold = np.array([engine.labels.index(r[2]) for r in rows])
        accs[lang] = float((logits.argmax(-1) == gold).mean())
    accs["avg"] = float(np.mean(list(accs.values())))
    return accs


def export_model(
    model_dir: str | Path,
    out: str | Path,
    samples: dict[str, Pairs],
    dev: dict[str, list[tuple[str, str, str]]] | None = None,
    max_length: int = 128,
    languages: tuple[str, ...] = (),
    examples: dict | None = None,
) -> ExportReport:
    """Export `model_dir` to `out` (replaced), check parity on `samples` (lang -> pairs) and, when `dev`
    (lang -> (premise, hypothesis, label)) is given, fp32 and int8 accuracy. `examples` (what
    `spotcheck.for_preset` returns) becomes examples.json, the labelled test pairs of GET /v1/examples."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = time.time()
    model_dir, out = Path(model_dir), Path(out)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    cfg = model.config
    max_length = min(max_length, cfg.max_position_embeddings - cfg.pad_token_id - 1)
    labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
    if out.exists():
        shutil.rmtree(out)
    (out / "onnx").mkdir(parents=True)
    example = tokenizer(["a"], ["b"], return_tensors="pt")
    with _quiet():
        _torch_export(model, out / VARIANTS["fp32-raw"], dict(example))
        _optimize(out / VARIANTS["fp32-raw"], out / VARIANTS["fp32"], cfg.num_attention_heads, cfg.hidden_size)
        _quantize(out / VARIANTS["fp32-raw"], out / VARIANTS["int8"])
    tokenizer.save_pretrained(str(out / "tokenizer"))
    meta = {
        "format": "stilts-onnx/1",
        "labels": labels,
        "max_length": max_length,
        "pad_id": tokenizer.pad_token_id,
        "pad_token": tokenizer.pad_token,
        "languages": list(languages or samples),
        "variants": VARIANTS,
        "opset": OPSET,
        "config": {
            k: getattr(cfg, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        },
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    # the manifest covers every file the server reads: the graphs, the tokenizer files, the metadata and the
    # spot-check examples
    files = sorted(str(p.relative_to(out)) for d in ("onnx", "tokenizer") for p in (out / d).iterdir()) + [META_FILE]
    if examples is not None:
        (out / spot_examples.EXAMPLES_FILE).write_bytes(spot_examples.dump(**examples))
        files.append(spot_examples.EXAMPLES_FILE)
    (out / CHECKSUM_FILE).write_text(json.dumps({f: sha256_file(out / f) for f in files}, indent=1))

    pairs = [p for lang in samples for p in samples[lang]]
    reference = torch_logits(model, tokenizer, pairs, max_length)
    engines = {variant: NLIEngine.load(out, variant) for variant in ("fp32-raw", "fp32", "int8")}
    parity = {}
    for variant in ("fp32-raw", "fp32"):
        got = engines[variant].logits([a for a, _ in pairs], [b for _, b in pairs])
        parity[variant] = float(np.abs(got - reference).max())
    report = ExportReport(
        str(out), parity, len(pairs), sizes={v: (out / f).stat().st_size for v, f in VARIANTS.items()}
    )
    worst = max(parity.values())
    if worst > PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX logits differ from torch by up to {worst:.2e} (> {PARITY_TOLERANCE:g}) on "
            f"{len(pairs)} pairs in {len(samples)} languages: {parity}"
        )
    log.info("parity: max |ONNX - torch| = %.2e over %d pairs in %d languages", worst, len(pairs), len(samples))
    if dev:
        for variant in ("fp32", "int8"):
            report.dev_accuracy[variant] = accuracy_by_language(engines[variant], dev)
        report.int8_delta_points = 100 * (report.dev_accuracy["int8"]["avg"] - report.dev_accuracy["fp32"]["avg"])
        level = logging.WARNING if abs(report.int8_delta_points) > INT8_TOLERANCE_POINTS else logging.INFO
        log.log(
            level,
            "dev average: fp32 %.4f, int8 %.4f (%+.2f points; tolerance %.1f)",
            report.dev_accuracy["fp32"]["avg"],
            report.dev_accuracy["int8"]["avg"],
            report.int8_delta_points,
            INT8_TOLERANCE_POINTS,
        )
    report.seconds = time.time() - start
    (out / "export_report.json").write_text(json.dumps(asdict(report), indent=1))
    return report


# --- packaging: the export as an MLflow model (pyfunc + onnx flavor) -----------------------------------
def xnli_dev(preset: str) -> dict[str, list[tuple[str, str, str]]]:
    """The preset's XNLI dev set per language as (premise, hypothesis, label)."""
    from stilts_mlflow.context import xnli_rows

    return xnli_rows(preset, "dev")


def parity_samples(dev: dict[str, list[tuple[str, str, str]]]) -> dict[str, list[tuple[str, str]]]:
    """The first PARITY_SAMPLE dev pairs of each language, for the torch/ONNX parity check."""
    return {lang: [(a, b) for a, b, _ in rows[:PARITY_SAMPLE]] for lang, rows in dev.items()}


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    labels = ("entailment", "neutral", "contradiction")
    return ModelSignature(
        inputs=Schema([ColSpec("string", "premise"), ColSpec("string", "hypothesis")]),
        outputs=Schema([ColSpec("string", "label")] + [ColSpec("double", f"p_{x}") for x in labels]),
        params=ParamSchema([ParamSpec("variant", "string", "fp32")]),
    )


def save_onnx_pyfunc(export_dir: Path, path: Path, example: list[tuple[str, str]]) -> Path:
    """The export as an MLflow model directory at `path`: pyfunc (premise/hypothesis columns, saved as code,
    nothing pickled) plus the onnx flavor on the optimized fp32 graph. `mlflow models serve -m path` serves it."""
    import onnx
    import onnxruntime
    import pandas as pd
    import tokenizers
    from mlflow.models import Model

    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(SERVING_DIR / "pyfunc.py"),
        artifacts={"export": str(export_dir)},
        code_paths=[str(SERVING_DIR)],
        signature=_signature(),
        input_example=pd.DataFrame(example, columns=["premise", "hypothesis"]),
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"onnxruntime=={onnxruntime.__version__}",
            f"tokenizers=={tokenizers.__version__}",
            "numpy",
            "pandas",
        ],
    )
    meta = Model.load(str(path / "MLmodel"))
    data = next(str(p.relative_to(path)) for p in path.rglob("model.opt.onnx"))
    meta.add_flavor("onnx", onnx_version=onnx.__version__, data=data, providers=["CPUExecutionProvider"])
    meta.save(str(path / "MLmodel"))
    return path


def log_onnx_model(export_dir: Path, run_id: str, name: str, example: list[tuple[str, str]]) -> str:
    """The export (see save_onnx_pyfunc) as a LoggedModel of `run_id`. Returns the LoggedModel id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_onnx_pyfunc(export_dir, Path(tmp) / "model", example)
        model = mlflow.initialize_logged_model(name=name, source_run_id=run_id, model_type="stilts-onnx-nli")
        MlflowClient().log_model_artifacts(model.model_id, str(path))
        mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def integrity_tags(export_dir: Path) -> dict[str, str]:
    """The registry's pins on an export: sha256 of the manifest (checksums.json, which covers every file the
    server reads; see serving/engine.py) and, for a glance at the registry, of each ONNX graph."""
    from serving.engine import CHECKSUM_FILE, MANIFEST_TAG, sha256_file

    checksums = json.loads((export_dir / CHECKSUM_FILE).read_text())
    return {
        MANIFEST_TAG: sha256_file(export_dir / CHECKSUM_FILE),
        **{f"sha256.{Path(f).name}": h for f, h in checksums.items() if f.endswith(".onnx")},
    }
