"""The model registry: `stilts-xnli` (transformers directories) and its ONNX twin `stilts-xnli-onnx`.

One `stilts-xnli` version per task subset, the subset's best pipeline over seeds by XNLI dev average,
tagged with its lineage (subset, k, seed, run ids, preset, dev scores); aliases `subset-<tasks>`,
`best-k<k>` and `champion`. Every version gets an ONNX twin (same tags plus export checks and sha256
of each file, same aliases) whose pyfunc serves premise/hypothesis pairs without torch.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from stilts_mlflow import tracking
from stilts_mlflow.phases import subset_name

log = logging.getLogger(__name__)
MODEL_NAME = "stilts-xnli"
ONNX_MODEL_NAME = "stilts-xnli-onnx"
SERVING_DIR = Path(__file__).resolve().parent.parent / "serving"
PARITY_SAMPLE = 16  # dev pairs per language for the torch/ONNX parity check


def dev_avg(row: dict[str, Any]) -> float:
    return row["metrics"].get("dev/xnli/accuracy.avg", float("nan"))


def log_target_model(target_run: str, subset: str) -> str:
    """The target phase's XLMRobertaForSequenceClassification directory as an MLflow LoggedModel of its run
    (MLflow 3 registers logged models); `models:/stilts-xnli@alias` then downloads that directory."""
    client = MlflowClient()
    local = mlflow.artifacts.download_artifacts(run_id=target_run, artifact_path="output")
    model = mlflow.initialize_logged_model(
        name=f"xnli-{subset}",
        source_run_id=target_run,
        model_type="transformers-xlm-roberta-sequence-classification",
        tags={"stilts.subset": subset},
    )
    client.log_model_artifacts(model.model_id, local)
    mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def register_best(rows: list[dict[str, Any]], preset: str) -> dict[str, str]:
    """Each subset's best pipeline (over seeds, by XNLI dev average) becomes a version of `stilts-xnli`;
    aliases subset-<tasks>, best-k<k> and champion point at the best versions. Returns alias -> version."""
    client = MlflowClient()
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = subset_name(tuple(r["subset"]))
        if name not in best or dev_avg(r) > dev_avg(best[name]):
            best[name] = r
    versions: dict[str, tuple[Any, dict[str, Any]]] = {}
    registered = {v.tags.get("run_id"): v for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    for name, r in sorted(best.items()):
        langs = {k.rsplit(".", 1)[1]: v for k, v in r["metrics"].items() if k.startswith("dev/xnli/accuracy.")}
        tags = {
            "subset": name,
            "k": str(r["k"]),
            "seed": str(r["seed"]),
            "run_id": r["target_run"],
            "pipeline_run_id": r["run_id"],
            "preset": preset,
            "xnli_dev_avg": f"{dev_avg(r):.4f}",
            **{f"dev_{lang}": f"{v:.4f}" for lang, v in langs.items()},
        }
        mv = registered.get(r["target_run"]) or mlflow.register_model(
            f"models:/{log_target_model(r['target_run'], name)}", MODEL_NAME, tags=tags
        )
        versions[name] = (mv, r)
    aliases = {}
    for name, (mv, _) in versions.items():
        aliases[f"subset-{name}"] = mv.version
    for k in sorted({r["k"] for _, r in versions.values()}):
        mv, _ = max((v for v in versions.values() if v[1]["k"] == k), key=lambda v: dev_avg(v[1]))
        aliases[f"best-k{k}"] = mv.version
    mv, _ = max(versions.values(), key=lambda v: dev_avg(v[1]))
    aliases["champion"] = mv.version
    for alias, version in aliases.items():
        client.set_registered_model_alias(MODEL_NAME, alias, version)
    return aliases


# --- ONNX twins -------------------------------------------------------------------------------
def parse_model_uri(uri: str) -> tuple[str, str] | None:
    """models:/NAME@ALIAS or models:/NAME/VERSION -> (NAME, ALIAS-or-VERSION); None for other URIs."""
    m = re.fullmatch(r"models:/([^/@]+)(?:@([\w.-]+)|/(\d+))", uri)
    return (m.group(1), m.group(2) or m.group(3)) if m else None


def resolve_version(uri: str):
    parsed = parse_model_uri(uri)
    if parsed is None:
        raise ValueError(f"--model-uri {uri!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION or a directory")
    client = MlflowClient()
    name, ref = parsed
    return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)


def xnli_dev(preset: str) -> dict[str, list[tuple[str, str, str]]]:
    """The preset's XNLI dev set per language as (premise, hypothesis, label)."""
    from stilts_mlflow.phases import Context
    from stilts_mlflow.presets import get_preset
    from stilts_mlflow.world import XNLI_LANGUAGES

    loader = Context(get_preset(preset)).loader
    return {
        lang: [(r["text_a"], r["text_b"], r["label"]) for r in loader.load("xnli", "dev", lang)]
        for lang in XNLI_LANGUAGES
    }


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


def export_version(mv, preset: str | None = None, dev: dict | None = None):
    """Export one `stilts-xnli` version to ONNX in an `export` run and register its twin (reused when one
    exists). Returns the `stilts-xnli-onnx` version."""
    from stilts_mlflow.export import export_model

    client = MlflowClient()
    for twin in client.search_model_versions(f"name='{ONNX_MODEL_NAME}'"):
        if twin.tags.get("source_version") == str(mv.version) and twin.tags.get("run_id") == mv.tags.get("run_id"):
            return twin
    preset = preset or mv.tags.get("preset", "tiny")
    dev = dev if dev is not None else xnli_dev(preset)
    samples = parity_samples(dev)
    key = tracking.make_key(kind="export", model=mv.name, version=mv.version, run_id=mv.tags.get("run_id"))
    tags = {
        "phase": "export",
        "preset": preset,
        "subset": mv.tags.get("subset", ""),
        "source": f"{mv.name}/{mv.version}",
    }
    with tracking.start(f"export {mv.name} v{mv.version}", tags, key=key) as run, tempfile.TemporaryDirectory() as tmp:
        source = mlflow.artifacts.download_artifacts(f"models:/{mv.name}/{mv.version}", dst_path=f"{tmp}/source")
        report = export_model(source, Path(tmp) / "export", samples, dev)
        tracking.log_metrics(report.metrics())
        mlflow.log_dict(json.loads((Path(tmp) / "export" / "export_report.json").read_text()), "export_report.json")
        model_id = log_onnx_model(
            Path(tmp) / "export",
            run.info.run_id,
            f"onnx-{mv.tags.get('subset', mv.version)}",
            samples["en"][:2] + samples.get("fr", [])[:1] + samples.get("zh", [])[:1],
        )
        pins = integrity_tags(Path(tmp) / "export")
    tags = {
        **mv.tags,
        "source_model": mv.name,
        "source_version": str(mv.version),
        "export_run_id": run.info.run_id,
        **pins,
        **{
            k.removeprefix("export/").replace("/", "."): f"{v:.6g}"
            for k, v in report.metrics().items()
            if "parity" in k or k.endswith("accuracy.avg") or "delta" in k or "size" in k or "seconds" in k
        },
    }
    return mlflow.register_model(f"models:/{model_id}", ONNX_MODEL_NAME, tags=tags)


def mirror_aliases(twins: dict[str, Any]) -> dict[str, str]:
    """Point every `stilts-xnli` alias whose version has a twin (source version -> twin) at that twin.
    Returns alias -> `stilts-xnli-onnx` version."""
    client = MlflowClient()
    aliases = {}
    for alias, version in client.get_registered_model(MODEL_NAME).aliases.items():
        if str(version) in twins:
            client.set_registered_model_alias(ONNX_MODEL_NAME, alias, twins[str(version)].version)
            aliases[alias] = twins[str(version)].version
    return aliases


def export_registered(preset: str | None = None) -> dict[str, str]:
    """ONNX twins for every `stilts-xnli` version, and every alias mirrored onto them."""
    versions = MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")
    dev = xnli_dev(preset) if preset else None
    return mirror_aliases({str(mv.version): export_version(mv, preset, dev) for mv in versions})
