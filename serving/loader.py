"""Find the exported model: `models:/stilts-xnli-onnx@ALIAS` (or /VERSION) from the tracking server, or a
local directory (an export, or a downloaded MLflow model holding one).

A registry version is downloaded into a private temporary directory (never into, or out of, the registry's
own artifact folder), read into memory and checked against its manifest, which the version's
`sha256.checksums.json` tag pins. A directory is checked against its own checksums.json only: it carries
no registry pin, so a file rewritten together with its manifest would go unnoticed; `integrity` in
GET /v1/model says which of the two the server runs on.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from serving.app import model_info
from serving.engine import MANIFEST_TAG, META_FILE, IntegrityError, NLIEngine

log = logging.getLogger("serving")
DIRECTORY_INTEGRITY = "checksums.json only (a directory carries no registry pin)"


class ModelNotFound(Exception):
    pass


def _export_dir(root: Path) -> Path:
    if (root / META_FILE).exists():
        return root
    found = sorted(p.parent for p in root.rglob(META_FILE))
    if not found:
        raise ModelNotFound(f"{root} holds no stilts ONNX export ({META_FILE} not found)")
    if not found[0].resolve().is_relative_to(root.resolve()):
        raise IntegrityError(f"{found[0]} resolves outside {root}: refusing to follow it")
    return found[0]


def _check_tracking_uri(uri: str) -> None:
    """A local tracking store that does not exist is an error, not a new empty database or folder."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if path and path != ":memory:" and not Path(path).is_file():
            raise ModelNotFound(f"tracking URI {uri}: database {path} does not exist")
    elif parsed.scheme in ("", "file") and not Path(parsed.path or uri).is_dir():
        raise ModelNotFound(f"tracking URI {uri}: folder {parsed.path or uri} does not exist")


def load(model_uri: str, variant: str = "fp32", cache: str | None = None) -> tuple[NLIEngine, dict]:
    if not model_uri.startswith("models:/"):
        root = Path(model_uri)
        if not root.is_dir():
            raise ModelNotFound(f"--model-uri {model_uri!r}: not a directory and not a models:/ URI")
        engine = NLIEngine.load(_export_dir(root), variant)
        log.warning("%s: a directory carries no registry pin; verified against its own checksums.json only", root)
        return engine, model_info(engine, source=str(root.resolve()), integrity=DIRECTORY_INTEGRITY)
    m = re.fullmatch(r"models:/([^/@]+)(?:@([\w.-]+)|/(\d+))", model_uri)
    if not m:
        raise ModelNotFound(f"--model-uri {model_uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias, version = m.groups()
    _check_tracking_uri(mlflow.get_tracking_uri())
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelNotFound(
            f"{model_uri}: no such registered model version or alias at {mlflow.get_tracking_uri()} ({exc.error_code})"
        ) from None
    pin = mv.tags.get(MANIFEST_TAG)
    if not pin:
        raise IntegrityError(
            f"{name} version {mv.version} has no {MANIFEST_TAG} tag pinning its manifest "
            "(registered before manifests were pinned): re-export it with `stilts export`"
        )
    with tempfile.TemporaryDirectory(prefix="stilts-serve-", dir=cache) as tmp:
        try:
            root = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}", dst_path=tmp))
        except (MlflowException, OSError) as exc:
            raise ModelNotFound(
                f"{model_uri}: cannot download version {mv.version}'s files "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
        engine = NLIEngine.load(_export_dir(root), variant, pin=pin)  # reads every file into memory
    return engine, model_info(
        engine,
        mv.tags,
        name=name,
        version=str(mv.version),
        alias=alias,
        source=model_uri,
        integrity=f"manifest pinned by the registry tag {MANIFEST_TAG}",
    )
