"""The model registry: `stilts-xnli` (transformers directories) and its ONNX twin `stilts-xnli-onnx`.

One `stilts-xnli` version per task subset, the subset's best pipeline over seeds by XNLI dev average,
tagged with its lineage (subset, k, seed, run ids, preset, dev scores); aliases `subset-<tasks>`,
`best-k<k>` and `champion`. Every version gets an ONNX twin (same tags plus export checks and sha256
of each file, same aliases) whose pyfunc serves premise/hypothesis pairs without torch.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from stilts_mlflow import spotcheck, tracking
from stilts_mlflow.export import export_model, integrity_tags, log_onnx_model, parity_samples, summary, xnli_dev
from stilts_mlflow.options import subset_name
from stilts_mlflow.process_pool import threads_each, tracked_pool

log = logging.getLogger(__name__)
MODEL_NAME = "stilts-xnli"
ONNX_MODEL_NAME = "stilts-xnli-onnx"


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


@dataclass(frozen=True)
class Exported:
    """One version's export run: what its ONNX twin's registration needs."""

    run_id: str
    model_id: str  # the run's logged ONNX model
    tags: dict[str, str]  # integrity pins and check summary


def _twin_of(mv, twins) -> Any | None:
    for twin in twins:
        if twin.tags.get("source_version") == str(mv.version) and twin.tags.get("run_id") == mv.tags.get("run_id"):
            return twin
    return None


def export_run(mv, preset: str | None, dev: dict | None, parent_id: str | None = None) -> Exported:
    """Export one `stilts-xnli` version to ONNX in an `export` run (under the active run, or the run `parent_id`
    names: a worker process's parent), checked for parity and logged as a model."""
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
    with (
        tracking.start(
            f"export {mv.name} v{mv.version}", tags, key=key, nested=parent_id is None, parent_id=parent_id
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        source = mlflow.artifacts.download_artifacts(f"models:/{mv.name}/{mv.version}", dst_path=f"{tmp}/source")
        report = export_model(source, Path(tmp) / "export", samples, dev, examples=spotcheck.for_preset(preset))
        tracking.log_metrics(report.metrics())
        mlflow.log_dict(json.loads((Path(tmp) / "export" / "export_report.json").read_text()), "export_report.json")
        model_id = log_onnx_model(
            Path(tmp) / "export",
            run.info.run_id,
            f"onnx-{mv.tags.get('subset', mv.version)}",
            samples["en"][:2] + samples.get("fr", [])[:1] + samples.get("zh", [])[:1],
        )
        pins = integrity_tags(Path(tmp) / "export")
    checks = {k.removeprefix("export/").replace("/", "."): f"{v:.6g}" for k, v in summary(report.metrics()).items()}
    return Exported(run.info.run_id, model_id, {**pins, **checks})


def register_twin(mv, exported: Exported):
    """Register an export run's model as the ONNX twin of `mv`: its tags, the source's and the checks'."""
    tags = {
        **mv.tags,
        "source_model": mv.name,
        "source_version": str(mv.version),
        "export_run_id": exported.run_id,
        **exported.tags,
    }
    return mlflow.register_model(f"models:/{exported.model_id}", ONNX_MODEL_NAME, tags=tags)


def export_version(mv, preset: str | None = None, dev: dict | None = None):
    """Export one `stilts-xnli` version to ONNX in an `export` run and register its twin (reused when one
    exists). Returns the `stilts-xnli-onnx` version."""
    twin = _twin_of(mv, MlflowClient().search_model_versions(f"name='{ONNX_MODEL_NAME}'"))
    return twin or register_twin(mv, export_run(mv, preset, dev))


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


def export_registered(preset: str | None = None, workers: int = 1) -> dict[str, str]:
    """ONNX twins for every `stilts-xnli` version, and every alias mirrored onto them. The exports run on
    `workers` processes (each one its share of the cores); the twins are registered here, in version order,
    so twin numbers follow source numbers whatever order the exports finish in."""
    client = MlflowClient()
    versions = sorted(client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda mv: int(mv.version))
    existing = client.search_model_versions(f"name='{ONNX_MODEL_NAME}'")
    twins = {str(mv.version): _twin_of(mv, existing) for mv in versions}
    todo = [mv for mv in versions if twins[str(mv.version)] is None]
    for mv, exported in zip(todo, _export_runs(todo, preset, workers)):
        twins[str(mv.version)] = register_twin(mv, exported)
    return mirror_aliases(twins)


def _export_runs(versions: list, preset: str | None, workers: int) -> list[Exported]:
    """The export runs of `versions`, in their order: here one after another, or on a pool of processes."""
    workers = max(1, min(workers, len(versions)))
    if workers == 1:
        dev = xnli_dev(preset) if preset else None
        return [export_run(mv, preset, dev) for mv in versions]
    active = mlflow.active_run()
    parent_id = active.info.run_id if active else None
    experiment_id = active.info.experiment_id if active else tracking.setup()
    log.info("%d ONNX exports on %d worker processes", len(versions), workers)
    with tracked_pool(workers, threads_each(workers), experiment_id) as pool:
        jobs = [(mv.name, str(mv.version), preset, parent_id) for mv in versions]
        return list(pool.map(_export_in_worker, *zip(*jobs)))


@functools.lru_cache(maxsize=4)
def _dev(preset: str) -> dict:
    return xnli_dev(preset)  # once per worker process, for all its exports


def _export_in_worker(name: str, version: str, preset: str | None, parent_id: str | None) -> Exported:
    mv = MlflowClient().get_model_version(name, version)
    return export_run(mv, preset, _dev(preset or mv.tags.get("preset", "tiny")), parent_id)
