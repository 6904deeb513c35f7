"""A preset's data (materialized jsonl), tokenizer and encoded splits, built once per process."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from stilts_mlflow import published, tracking
from stilts_mlflow.data import cache_dir, data_key, materialize, train_corpus_tokenizer, unit_path
from stilts_mlflow.features import Encoded, encode, tag_set
from stilts_mlflow.mlm import LanguageVocab, language_vocab
from stilts_mlflow.presets import Preset, TrainConfig, key_fields
from stilts_mlflow.tasks import get_task, make_loader, task_languages
from stilts_mlflow.tasks.loaders import LocalLoader
from stilts_mlflow.tokenizer import TOKENIZER_VERSION, load_tokenizer


class Context:
    """The preset's data (materialized jsonl), tokenizer and encoded splits, built once per process."""

    def __init__(self, preset: Preset, progress: bool = True):
        self.preset = preset
        cfg = preset.data
        if cfg.source == "synthetic":  # generated once per data key, then read as local jsonl
            self.data_dir: Path | None = materialize(cfg, progress)
            self.loader = LocalLoader(self.data_dir)
        else:  # hub or local: load only the tasks a phase needs
            self.data_dir = Path(cfg.local_dir) if cfg.source == "local" else None
            self.loader = make_loader(cfg)
        self._encoded: dict[tuple, Encoded] = {}

    @cached_property
    def tokenizer_dir(self) -> str:
        cfg = self.preset.data
        if cfg.tokenizer.startswith(published.PREFIX):
            return str(published.path(cfg.tokenizer))
        if cfg.tokenizer != "train":
            return cfg.tokenizer
        out = cache_dir() / "tokenizers" / f"{data_key(cfg)}-{cfg.vocab_size}-{TOKENIZER_VERSION}"
        if not (out / "tokenizer_config.json").exists():
            train_corpus_tokenizer(cfg, self.loader, out)
        return str(out)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_dir)

    @cached_property
    def mlm_vocab(self) -> LanguageVocab:
        """Each language's tokens in the MLM corpus (train and dev), for the language softmax (mlm.py)."""
        sets = {
            lang: [self.encoded("mlm", split, lang) for split in ("train", "dev")]
            for lang in task_languages("mlm", "train")
        }
        return language_vocab(sets, len(self.tokenizer), self.tokenizer.mask_token_id)

    def encoded(self, task: str, split: str, lang: str = "en", labels: tuple[str, ...] | None = None) -> Encoded:
        key = (task, split, lang)
        if key not in self._encoded:
            spec = get_task(task)
            records = self.loader.load(task, split, lang)
            if spec.kind == "tagging" and labels is None:
                labels = tag_set(self.loader.load(task, "train", "en"))
            self._encoded[key] = encode(spec, records, self.tokenizer, self.preset.model.max_length, labels)
        return self._encoded[key]

    def mlm_corpus(self, split: str) -> Encoded:
        """The multilingual MLM corpus of `split`, every language in one set."""
        parts = [self.encoded("mlm", split, lang) for lang in task_languages("mlm", split)]
        return Encoded(parts[0].task, [f for p in parts for f in p.features], parts[0].labels)

    def use_mlm_softmax(self, model, tc: TrainConfig) -> None:
        """With `mlm_softmax="language"`, MLM scores each masked token against its own language's tokens
        (mlm.py): the model gets every language's vocabulary from the corpus (train and dev)."""
        if tc.mlm_softmax == "language":
            model.mlm_vocab = self.mlm_vocab

    def input_files(self, task: str, split: str) -> dict[str, Path]:
        if self.data_dir is None:
            return {}
        files = {
            f"{task}-{split}-{lang}": unit_path(self.data_dir, task, split, lang)
            for lang in task_languages(task, split)
        }
        return {name: path for name, path in files.items() if path.exists()}


_CONTEXTS: dict[str, Context] = {}


def context_for(preset: Preset, progress: bool = True) -> Context:
    """This preset's Context, built once per process and cache directory: the pipelines of an in-process
    study (and each worker of its pool) load the data and encode each split once, not once per pipeline."""
    key = tracking.make_key(preset=key_fields(preset), cache=str(cache_dir().resolve()))
    if key not in _CONTEXTS:
        _CONTEXTS[key] = Context(preset, progress)
    return _CONTEXTS[key]


def xnli_rows(preset: str, split: str) -> dict[str, list[tuple[str, str, str]]]:
    """A preset's XNLI `split` per language as (premise, hypothesis, label), through the loader evaluation uses
    (synthetic presets: the materialized data cache; real presets: XNLI itself)."""
    from stilts_mlflow.presets import get_preset
    from stilts_mlflow.world import XNLI_LANGUAGES

    loader = Context(get_preset(preset), progress=False).loader
    return {
        lang: [(r["text_a"], r["text_b"], r["label"]) for r in loader.load("xnli", split, lang)]
        for lang in XNLI_LANGUAGES
    }
