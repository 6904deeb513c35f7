"""Three loaders behind one interface, all yielding the records of `records.py`.

- synthetic: the seeded world (offline default);
- hub: `datasets.load_dataset` with the real dataset names, configs and columns (or `load_from_disk`
  copies of them under a mirror directory, for machines without hub access and for tests);
- local: a directory of jsonl files, DIR/<task>/<split>.jsonl or DIR/<task>/<split>.<lang>.jsonl.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from stilts_mlflow.presets import DataConfig
from stilts_mlflow.tasks.records import DataError, Record, validate
from stilts_mlflow.tasks.spec import NLI_LABELS, TaskSpec, get_task
from stilts_mlflow.world import XNLI_LANGUAGES, World
from stilts_mlflow.world.languages import CC100_SHARES

log = logging.getLogger(__name__)


def task_languages(task: str, split: str) -> tuple[str, ...]:
    """Languages a (task, split) exists in: XNLI dev/test and the MLM corpus are multilingual."""
    if task == "mlm" or (task == "xnli" and split != "train"):
        return XNLI_LANGUAGES
    return ("en",)


def split_size(cfg: DataConfig, task: str, split: str, lang: str = "en") -> int:
    if task == "mlm":
        if split != "train":
            return max(4, cfg.mlm_docs_per_lang // 20)
        if cfg.language_shares == "cc100":  # XLM-R's alpha-smoothed CC-100 shares of the same total
            return max(4, round(cfg.mlm_docs_per_lang * len(XNLI_LANGUAGES) * CC100_SHARES[lang]))
        return cfg.mlm_docs_per_lang
    if task == "xnli":
        return {"train": cfg.xnli_train, "dev": cfg.xnli_dev, "test": cfg.xnli_test}[split]
    return cfg.task_train if split == "train" else cfg.task_eval


class Loader(Protocol):
    def load(self, task: str, split: str, lang: str = "en") -> list[Record]: ...


class SyntheticLoader:
    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    @cached_property
    def tasks(self):
        from stilts_mlflow.tasks.synthetic import SyntheticTasks

        return SyntheticTasks(World(self.cfg.world_seed))

    def load(self, task: str, split: str, lang: str = "en") -> list[Record]:
        spec = get_task(task)
        records = self.tasks.generate(task, split, lang, split_size(self.cfg, task, split, lang))
        return [validate(r, spec, f"synthetic {task}/{split}/{lang} #{i}") for i, r in enumerate(records)]


class LocalLoader:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, task: str, split: str, lang: str) -> Path:
        per_lang = self.root / task / f"{split}.{lang}.jsonl"
        return (
            per_lang
            if per_lang.exists() or len(task_languages(task, split)) > 1
            else self.root / task / f"{split}.jsonl"
        )

    def load(self, task: str, split: str, lang: str = "en") -> list[Record]:
        return read_jsonl(self.path(task, split, lang), get_task(task), lang)


def read_jsonl(path: Path, spec: TaskSpec, lang: str | None = None) -> list[Record]:
    """Every line decoded, parsed and validated; the first bad line raises DataError naming file, line and
    (where there is one) field. A file without records, or a record whose lang is not `lang` (the file's
    language), is an error too: both mean the wrong file, not an empty split."""
    if not path.exists():
        raise DataError(f"{path}: file not found (local data for task {spec.name}; see README 'Local data format')")
    records = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 at byte {exc.start} of the line") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply") from None
            except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
                raise DataError(f"{path}:{lineno}: unreadable JSON value ({str(exc).split(';')[0]})") from None
            record = validate(obj, spec, f"{path}:{lineno}")
            if lang is not None and record["lang"] != lang:
                raise DataError(f"{path}:{lineno}: field 'lang' is {record['lang']!r}, but this file holds {lang!r}")
            records.append(record)
    if not records:
        raise DataError(f"{path}: no records (the file is empty or blank); an empty split cannot train or evaluate")
    return records


# --- hub ------------------------------------------------------------------------------------------
def _nli(row: dict, spec: TaskSpec, lang: str) -> Record | None:
    if row["label"] not in (0, 1, 2):
        return None  # GLUE/ANLI test splits carry label -1: unlabeled
    return {"text_a": row["premise"], "text_b": row["hypothesis"], "label": NLI_LABELS[row["label"]], "lang": lang}


def _qqp(row: dict, spec: TaskSpec, lang: str) -> Record | None:
    if row["label"] not in (0, 1):
        return None
    return {"text_a": row["question1"], "text_b": row["question2"], "label": spec.labels[row["label"]], "lang": lang}


def _squad(row: dict, spec: TaskSpec, lang: str) -> Record:
    answers = row["answers"]
    return {
        "context": row["context"],
        "question": row["question"],
        "answers": {"text": list(answers["text"]), "answer_start": [int(x) for x in answers["answer_start"]]},
        "lang": lang,
    }


def _hellaswag(row: dict, spec: TaskSpec, lang: str) -> Record | None:
    if row["label"] in ("", None):
        return None  # the hub's test split is unlabeled
    return {
        "context": row["ctx"],
        "question": "",
        "choices": list(row["endings"]),
        "label": int(row["label"]),
        "lang": lang,
    }


def _cosmosqa(row: dict, spec: TaskSpec, lang: str) -> Record | None:
    if row["label"] not in (0, 1, 2, 3):
        return None
    return {
        "context": row["context"],
        "question": row["question"],
        "choices": [row[f"answer{i}"] for i in range(4)],
        "label": int(row["label"]),
        "lang": lang,
    }


def _csqa(row: dict, spec: TaskSpec, lang: str) -> Record | None:
    keys = list(row["choices"]["label"])
    if row["answerKey"] not in keys:
        return None
    return {
        "context": "",
        "question": row["question"],
        "choices": list(row["choices"]["text"]),
        "label": keys.index(row["answerKey"]),
        "lang": lang,
    }


HUB_CONVERTERS = {
    "xnli": _nli,
    "mnli": _nli,
    "anli": _nli,
    "qqp": _qqp,
    "squad": _squad,
    "squad_v2": _squad,
    "hellaswag": _hellaswag,
    "cosmosqa": _cosmosqa,
    "commonsenseqa": _csqa,
}

CCG_HELP = (
    "CCG has no hub dataset. Provide a CCGbank-derived file per split at {path}: one "
    "'token<TAB>supertag' per line, a blank line between sentences (e.g. converted from LDC2005T13 "
    "AUTO files, as in jiant's CCG task), then set the data directory with --data-dir."
)


def read_ccg_tsv(path: Path) -> list[Record]:
    if not path.exists():
        raise DataError(CCG_HELP.format(path=path))
    spec, records, tokens, tags = get_task("ccg"), [], [], []
    with path.open(encoding="utf-8") as fh:
        lines = list(fh) + [""]
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            if tokens:
                records.append(
                    validate(
                        {"id": f"ccg-{len(records)}", "tokens": tokens, "tags": tags, "lang": "en"},
                        spec,
                        f"{path}:{lineno}",
                    )
                )
            tokens, tags = [], []
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{path}:{lineno}: expected 'token<TAB>supertag', got {line.strip()!r}")
        tokens.append(parts[0])
        tags.append(parts[1])
    return records


class HubLoader:
    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def _dataset(self, path: str, config: str | None, split: str) -> Any:
        import datasets

        if self.cfg.hub_mirror:  # a save_to_disk copy of the hub dataset: same columns, no network
            where = Path(self.cfg.hub_mirror) / path.replace("/", "__") / (config or "default")
            if not where.exists():
                raise DataError(
                    f"{where}: hub mirror has no copy of {path} (config {config}); "
                    f"save one with datasets.load_dataset(...).save_to_disk"
                )
            return datasets.load_from_disk(str(where))[split]
        return datasets.load_dataset(path, config, split=split)

    def load(self, task: str, split: str, lang: str = "en") -> list[Record]:
        spec = get_task(task)
        if task == "ccg":
            root = Path(self.cfg.local_dir or "data")
            return read_ccg_tsv(root / "ccg" / f"{split}.tsv")
        if spec.hub is None:
            raise DataError(f"task {task} has no hub dataset; use the synthetic or local source")
        config = spec.hub.config.format(lang=lang) if spec.hub.config else None
        rows = self._dataset(spec.hub.path, config, spec.hub.splits[split])
        convert = HUB_CONVERTERS[task]
        records, skipped = [], 0
        for i, row in enumerate(rows):
            rec = convert(row, spec, lang)
            if rec is None:
                skipped += 1
                continue
            rec = {"id": str(row.get("id", row.get("idx", row.get("uid", i)))), **rec}
            records.append(validate(rec, spec, f"{spec.hub.path} {config or ''} {split} row {i}"))
        if skipped:
            log.warning("%s/%s: skipped %d unlabeled rows of %d", task, split, skipped, skipped + len(records))
        limit = split_size(self.cfg, task, split)
        return records[:limit] if limit else records


def make_loader(cfg: DataConfig) -> Loader:
    if cfg.source == "synthetic":
        return SyntheticLoader(cfg)
    if cfg.source == "hub":
        return HubLoader(cfg)
    if cfg.source == "local":
        if not cfg.local_dir:
            raise DataError("data source 'local' needs a data directory (--data-dir)")
        return LocalLoader(cfg.local_dir)
    raise DataError(f"unknown data source {cfg.source!r}; allowed: synthetic, hub, local")
