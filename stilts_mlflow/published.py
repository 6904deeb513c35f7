"""The published encoder: `stilts-mini-xlmr`, the offline presets' counterpart of XLM-R.

The paper's phase (i) is a publicly available masked LM; it never pretrains. The offline default does the
same: its encoder is pretrained once (`stilts pretrain --preset tiny --publish DIR`) and shipped in this
package as an `XLMRobertaForMaskedLM` directory (safetensors, config, tokenizer) with a manifest that
records the world generator's fingerprint, the exact recipe, seed, steps, wall time and the sha256 of
every file. Pipelines start from it; on first use it is registered in the MLflow registry as
`stilts-mini-xlmr` (alias `published`) so every pipeline's lineage shows which encoder it came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENCODERS_DIR = Path(__file__).resolve().parent / "encoders"
MANIFEST = "manifest.json"
REGISTERED_NAME = "stilts-mini-xlmr"
ALIAS = "published"
PREFIX = "published:"  # how presets name a shipped encoder (in tokenizer / pretrained fields)
FINGERPRINT_SAMPLE = 20  # documents and XNLI pairs per language hashed into the world fingerprint


class PublishedEncoderError(ValueError):
    """A shipped encoder that is missing, altered, or built from another world than the generator's."""


def path(name: str) -> Path:
    """The directory of a shipped encoder ("stilts-mini-xlmr" or "published:stilts-mini-xlmr")."""
    name = name.removeprefix(PREFIX)
    out = ENCODERS_DIR / name
    if not (out / MANIFEST).exists():
        raise PublishedEncoderError(
            f"no published encoder {name!r}: {out / MANIFEST} is missing "
            f"(make it with `stilts pretrain --preset tiny --publish {out}`)"
        )
    return out


def sha256(file: Path) -> str:
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def world_fingerprint(data_cfg) -> str:
    """What the encoder's pretraining saw, in one hash: the world version, the data recipe, every language's
    vocabulary and the first documents and XNLI test pairs of each language. Any change to the generator's
    lexicon, grammar, corpus or NLI pairs changes it."""
    from stilts_mlflow.data import data_fields
    from stilts_mlflow.tasks.synthetic import SyntheticTasks
    from stilts_mlflow.world import WORLD_VERSION, XNLI_LANGUAGES, World

    world = World(data_cfg.world_seed)
    tasks = SyntheticTasks(world)
    blob = {
        "version": WORLD_VERSION,
        "data": data_fields(data_cfg),
        "vocabulary": {lang: world.realizers[lang].v.forms for lang in XNLI_LANGUAGES},
        "mlm": {
            lang: [r["text"] for r in tasks.generate("mlm", "train", lang, FINGERPRINT_SAMPLE)]
            for lang in XNLI_LANGUAGES
        },
        "xnli": {lang: tasks.generate("xnli", "test", lang, FINGERPRINT_SAMPLE) for lang in XNLI_LANGUAGES},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def host() -> str:
    """The CPU model and core count (wall times are only comparable on one host)."""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs"


def write_manifest(
    out: Path, preset, seed: int, steps: int, wall_seconds: float, metrics: dict[str, float]
) -> dict[str, Any]:
    """The manifest of an encoder directory just written (sha256 of every other file in it)."""
    out = Path(out)
    files = {f.name: sha256(f) for f in sorted(out.iterdir()) if f.is_file() and f.name != MANIFEST}
    manifest = {
        "name": REGISTERED_NAME,
        "format": 1,
        "preset": preset.name,
        "world": {"fingerprint": world_fingerprint(preset.data)},
        "recipe": {"data": asdict(preset.data), "model": asdict(preset.model), "pretrain": asdict(preset.pretrain)},
        "seed": seed,
        "steps": steps,
        "wall_seconds": round(wall_seconds, 1),
        "host": host(),
        "created": time.strftime("%Y-%m-%d", time.gmtime()),
        "metrics": metrics,
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def publish(source: Path, target: Path, preset, seed: int, metrics: dict[str, float]) -> dict[str, Any]:
    """A pretraining phase's output directory written as a published encoder at `target`, with its manifest.
    Built in a sibling directory and renamed into place, so `target` is never left half-written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("DONE", "phase_metrics.json"))
        manifest = write_manifest(
            tmp, preset, seed, int(metrics["steps"]), metrics["seconds"], {"mlm_dev_loss": metrics["mlm_loss"]}
        )
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    file = Path(directory) / MANIFEST
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PublishedEncoderError(f"{file}: cannot read the manifest ({e})") from e


def verify(directory: Path, data_cfg=None) -> dict[str, Any]:
    """The manifest, once every listed file matches its sha256, no unlisted file is present, and (with
    `data_cfg`) the world fingerprint equals the generator's. Raises PublishedEncoderError naming the file."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    listed = manifest.get("files") or {}
    if "model.safetensors" not in listed:
        raise PublishedEncoderError(f"{directory / MANIFEST}: 'files' does not list model.safetensors")
    for name, digest in listed.items():
        file = directory / name
        if file.is_symlink() or not file.is_file():
            raise PublishedEncoderError(f"{file}: listed in the manifest but missing (or a link)")
        if sha256(file) != digest:
            raise PublishedEncoderError(f"{file}: sha256 differs from the manifest's (the file was changed)")
    extra = sorted(f.name for f in directory.iterdir() if f.name not in listed and f.name != MANIFEST)
    if extra:
        raise PublishedEncoderError(f"{directory}: files not in the manifest: {', '.join(extra)}")
    if data_cfg is not None:
        now = world_fingerprint(data_cfg)
        if manifest["world"]["fingerprint"] != now:
            raise PublishedEncoderError(
                f"{directory / MANIFEST}: world fingerprint {manifest['world']['fingerprint'][:12]} differs from the "
                f"generator's {now[:12]}: the world changed since this encoder was pretrained; publish a new one "
                f"(`stilts pretrain --preset {manifest['preset']} --publish {directory}`)"
            )
    return manifest


def lineage_key(directory: Path) -> str:
    """The cache key of a pipeline's starting encoder: its weights' sha256 (path-independent)."""
    return read_manifest(directory)["files"]["model.safetensors"][:16]


def register(directory: Path) -> str:
    """`models:/stilts-mini-xlmr/<version>` for this encoder, registered (with alias `published`) on first use.
    A version is matched by its weights' sha256, so a rerun or another clone registers nothing new."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    manifest = read_manifest(directory)
    digest = manifest["files"]["model.safetensors"]
    client = MlflowClient()
    for mv in client.search_model_versions(f"name='{REGISTERED_NAME}'"):
        if mv.tags.get("sha256") == digest:
            break
    else:
        model = mlflow.initialize_logged_model(
            name=REGISTERED_NAME, model_type="transformers-xlm-roberta-masked-lm", tags={"stilts.published": "true"}
        )
        client.log_model_artifacts(model.model_id, str(directory))
        mlflow.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        tags = {
            "sha256": digest,
            "world_fingerprint": manifest["world"]["fingerprint"],
            "preset": manifest["preset"],
            "steps": str(manifest["steps"]),
            "seed": str(manifest["seed"]),
            "created": manifest["created"],
        }
        mv = mlflow.register_model(f"models:/{model.model_id}", REGISTERED_NAME, tags=tags)
        log.info("registered the published encoder as models:/%s/%s", REGISTERED_NAME, mv.version)
    if client.get_registered_model(REGISTERED_NAME).aliases.get(ALIAS) != mv.version:
        client.set_registered_model_alias(REGISTERED_NAME, ALIAS, mv.version)
    return f"models:/{REGISTERED_NAME}/{mv.version}"
