"""Find the exported model: `models:/stilts-xnli-onnx@ALIAS` (or /VERSION) from the tracking server, or a
local directory (an export, or a downloaded MLflow model holding one). Registry files are checked
against the version's sha256 tags before a session is created."""

from __future__ import annotations

import re
from pathlib import Path

from serving.engine import META_FILE, NLIEngine, verify_registry_tags
from serving.app import model_info


class ModelNotFound(Exception):
    pass


def _export_dir(root: Path) -> Path:
    if (root / META_FILE).exists():
        return root
    found = sorted(p.parent for p in root.rglob(META_FILE))
    if not found:
        raise ModelNotFound(f"{root} holds no stilts ONNX export ({META_FILE} not found)")
    return found[0]


def load(model_uri: str, variant: str = "fp32", cache: str | None = None) -> tuple[NLIEngine, dict]:
    if not model_uri.startswith("models:/"):
        root = Path(model_uri)
        if not root.is_dir():
            raise ModelNotFound(f"--model-uri {model_uri!r}: not a directory and not a models:/ URI")
        engine = NLIEngine.load(_export_dir(root), variant)
        return engine, model_info(engine, source=str(root.resolve()))
    m = re.fullmatch(r"models:/([^/@]+)(?:@([\w.-]+)|/(\d+))", model_uri)
    if not m:
        raise ModelNotFound(f"--model-uri {model_uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias, version = m.groups()
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelNotFound(f"{model_uri}: no such registered model version or alias at "
                            f"{mlflow.get_tracking_uri()} ({exc.error_code})") from None
    root = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=cache))
    export_dir = _export_dir(root)
    verify_registry_tags(export_dir, mv.tags)
    engine = NLIEngine.load(export_dir, variant)
    return engine, model_info(engine, mv.tags, name=name, version=str(mv.version), alias=alias, source=model_uri)
