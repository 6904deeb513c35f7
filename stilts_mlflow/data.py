"""Building the whole data set of a preset: export to the local jsonl format, caching, description.

Files are written to a temporary directory and renamed into place only when every task and split
has loaded and validated, so a failure never leaves half a data set behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stilts_mlflow.presets import DataConfig, key_fields
from stilts_mlflow.tasks import TASKS, make_loader, task_languages
from stilts_mlflow.tasks.spec import SPLITS
from stilts_mlflow.world import WORLD_VERSION

log = logging.getLogger(__name__)


def data_fields(cfg: DataConfig) -> dict[str, Any]:
    """The config fields the data depend on: all but the tokenizer, which only reads them."""
    return {k: v for k, v in key_fields(cfg).items() if k != "tokenizer"}


def data_key(cfg: DataConfig) -> str:
    """Hash of everything the data depend on (config + world version)."""
    blob = json.dumps({"cfg": data_fields(cfg), "world": WORLD_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_units(cfg: DataConfig) -> list[tuple[str, str, str]]:
    """Every (task, split, lang) the preset provides; the MLM corpus only where we pretrain."""
    units = []
    for task in TASKS:
        if task == "mlm" and cfg.source != "synthetic" and not cfg.local_dir:
            continue
        for split in SPLITS:
            if task == "mlm" and split == "test":
                continue
            units.extend((task, split, lang) for lang in task_languages(task, split))
    return units


def unit_path(root: Path, task: str, split: str, lang: str) -> Path:
    multilingual = len(task_languages(task, split)) > 1
    return root / task / (f"{split}.{lang}.jsonl" if multilingual else f"{split}.jsonl")


def export(cfg: DataConfig, out: Path, progress: bool = True) -> Path:
    """Write the preset's data in the local jsonl format, atomically."""
    out = Path(out)
    loader = make_loader(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for task, split, lang in tqdm(data_units(cfg), desc="data", disable=not progress):
            path = unit_path(tmp, task, split, lang)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as fh:
                for rec in loader.load(task, split, lang):
                    fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
        (tmp / "MANIFEST.json").write_text(json.dumps({"key": data_key(cfg), "config": asdict(cfg)}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("STILTS_CACHE", ".stilts_cache"))


def materialize(cfg: DataConfig, progress: bool = True) -> Path:
    """The preset's data as local jsonl under the cache, built once per data_key."""
    out = cache_dir() / "data" / data_key(cfg)
    if (out / "MANIFEST.json").exists():
        return out
    log.info("building data set %s", out)
    return export(cfg, out, progress)


def describe(cfg: DataConfig) -> dict[str, Any]:
    """Tasks, kinds, sizes per split and language, label balance."""
    loader = make_loader(cfg)
    out: dict[str, Any] = {"source": cfg.source, "key": data_key(cfg), "tasks": {}}
    for task, split, lang in data_units(cfg):
        spec = TASKS[task]
        entry = out["tasks"].setdefault(
            task,
            {"kind": spec.kind, "head": spec.head, "metric": spec.metric, "labels": list(spec.labels), "splits": {}},
        )
        recs = loader.load(task, split, lang)
        info = entry["splits"].setdefault(split, {"size": {}, "labels": Counter()})
        info["size"][lang] = len(recs)
        for r in recs:
            if spec.kind == "classification" or spec.kind == "multiple_choice":
                info["labels"][str(r["label"])] += 1
            elif spec.kind == "span_qa":
                info["labels"]["answerable" if r["answers"]["text"] else "unanswerable"] += 1
    for entry in out["tasks"].values():
        for info in entry["splits"].values():
            info["labels"] = dict(sorted(info["labels"].items()))
    return out


def train_corpus_tokenizer(cfg: DataConfig, loader, out: Path) -> Path:
    """The preset's SentencePiece tokenizer, trained on its MLM corpus in every language."""
    from stilts_mlflow.tokenizer import train_tokenizer
    from stilts_mlflow.world import World

    if cfg.tokenizer != "train":
        raise ValueError(f"this preset uses the pretrained tokenizer {cfg.tokenizer}; nothing to train")
    texts = [r["text"] for lang in task_languages("mlm", "train") for r in loader.load("mlm", "train", lang)]
    return train_tokenizer(texts, cfg.vocab_size, out, alphabet=World(cfg.world_seed).alphabet())
