"""The three STILTs phases and the evaluation, each a cached, resumable MLflow run.

pretrain (offline presets: MLM on the synthetic corpus; real presets use XLM-R as is) ->
intermediate (English tasks, one shared encoder, heads by name) -> target (English NLI fine-tune) ->
evaluate (zero-shot XNLI test in 15 languages). Each phase's run is tagged with a `stilts.key`
(its resolved config plus its input's key); a finished run with that key is reused, an unfinished
one resumes from the checkpoint in `$STILTS_CACHE/runs/<key>/`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
from accelerate.utils import set_seed
from safetensors.torch import load_model, save_model
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

from stilts_mlflow import distributed, published, tracking
from stilts_mlflow.data import cache_dir, data_key, materialize, train_corpus_tokenizer, unit_path
from stilts_mlflow.evaluate import evaluate_tasks, report_figure, report_table, zero_shot
from stilts_mlflow.features import Encoded, encode, tag_set
from stilts_mlflow.mlm import LanguageVocab, language_vocab
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.presets import PRETRAIN_CHOICES, Preset, TrainConfig, get_preset, key_fields
from stilts_mlflow.tasks import get_task, make_loader, parse_tasks, task_languages
from stilts_mlflow.tasks.loaders import LocalLoader
from stilts_mlflow.tokenizer import TOKENIZER_VERSION, load_tokenizer
from stilts_mlflow.train import BUDGETS, PhaseConfig, PhaseResult, train_phase
from stilts_mlflow.sampling import SAMPLERS

log = logging.getLogger(__name__)
HEADS_FILE = "heads.json"
ATTEMPTS = "attempts"  # target phase metrics: how many attempts (1 + restarts) it took


@dataclass(frozen=True)
class Options:
    """What a user chooses on the command line (the preset supplies everything else)."""

    preset: str = "tiny"
    tasks: tuple[str, ...] = ()
    seed: int = 0
    pretrain_seed: int = 0  # shared by every pipeline of a study
    sampler: str = "proportional"
    temperature: float = 2.0
    cap: int = 0
    budget: str = "fixed"
    select: str = "en"
    pretrain: str = "auto"  # auto | train | skip (PRETRAIN_CHOICES)
    mixed_precision: str = "no"
    progress: bool = True
    source: str | None = None  # data overrides (see `stilts data --help`)
    data_dir: str | None = None
    hub_mirror: str | None = None
    pretrained: str | None = None  # a local XLM-R copy (save_pretrained dir with its tokenizer)

    def resolve(self) -> Preset:
        preset = get_preset(self.preset)
        if self.pretrained:
            if preset.model.init != "pretrained":
                raise ValueError(f"--pretrained applies to the xlmr presets; {preset.name} pretrains its own encoder")
            preset = replace(
                preset,
                model=replace(preset.model, pretrained=self.pretrained),
                data=replace(preset.data, tokenizer=self.pretrained),
            )
        if self.pretrain == "auto" and preset.model.published:  # start from the shipped encoder, its tokenizer
            name = published.PREFIX + preset.model.published
            preset = replace(
                preset,
                model=replace(preset.model, init="pretrained", pretrained=name),
                data=replace(preset.data, tokenizer=name),
            )
        elif self.pretrain == "train" and preset.pretrain is None:
            raise ValueError(
                f"pretrain=train: preset {preset.name} starts from {preset.model.pretrained} and has no "
                "pretraining recipe"
            )
        data = preset.data
        for name, value in (("source", self.source), ("local_dir", self.data_dir), ("hub_mirror", self.hub_mirror)):
            if value:
                data = replace(data, **{name: value})
        return replace(preset, data=data)

    def __post_init__(self):
        get_preset(self.preset)
        parse_tasks(",".join(self.tasks))
        checks = {
            "sampler": (self.sampler, SAMPLERS),
            "budget": (self.budget, BUDGETS),
            "select": (self.select, ("en", "avg")),
            "pretrain": (self.pretrain, PRETRAIN_CHOICES),
            "mixed_precision": (self.mixed_precision, ("no", "fp16", "bf16")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.seed < 0 or self.pretrain_seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        if self.cap < 0:
            raise ValueError(f"cap must be >= 0; got {self.cap}")
        if self.sampler == "capped" and self.cap == 0:
            raise ValueError("sampler=capped needs cap > 0 (examples per task)")


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


def subset_name(tasks: tuple[str, ...]) -> str:
    """How runs, tags and registry aliases name a task subset: sorted names joined by '-', or 'none'."""
    return "-".join(sorted(tasks)) or "none"


# --- models on disk ---------------------------------------------------------------------------------
def head_for(task: str, ctx: Context) -> HeadSpec:
    spec = get_task(task)
    n = len(ctx.encoded(task, "train").labels) if spec.kind in ("classification", "tagging") else 0
    return HeadSpec(spec.head, spec.kind, n)


def build_model(init: str | None, heads: list[HeadSpec], ctx: Context, seed: int) -> MultiTaskModel:
    """init: None (random encoder), an XLMRobertaForMaskedLM dir or hub name, or a phase output dir.
    New weights (a random encoder, new heads) depend only on `seed`, never on what ran before."""
    set_seed(seed)
    if init is None:
        return MultiTaskModel(encoder_config(ctx.preset.model, len(ctx.tokenizer)), heads)
    path = Path(init)
    if (path / HEADS_FILE).exists():  # an intermediate-phase output: encoder plus trained heads
        saved = [HeadSpec(**h) for h in json.loads((path / HEADS_FILE).read_text())]
        model = MultiTaskModel(XLMRobertaConfig.from_pretrained(str(path)), saved)
        load_model(model, str(path / "model.safetensors"))
        for h in heads:
            model.add_head(h)
        return model
    pretrained = XLMRobertaForMaskedLM.from_pretrained(init)
    if pretrained.config.vocab_size < len(ctx.tokenizer):
        raise ValueError(
            f"model {init} has {pretrained.config.vocab_size} embeddings but the tokenizer "
            f"{ctx.tokenizer_dir} has {len(ctx.tokenizer)} tokens"
        )
    model = MultiTaskModel(pretrained.config, heads)
    model.load_encoder_from(pretrained)
    return model


def save_multitask(model: MultiTaskModel, tokenizer, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(out))
    save_model(model, str(out / "model.safetensors"))
    (out / HEADS_FILE).write_text(json.dumps([asdict(s) for s in model.specs.values()], indent=1))
    tokenizer.save_pretrained(str(out))
    return out


# --- cached, resumable phase runs -------------------------------------------------------------------
@dataclass
class PhaseOutput:
    key: str
    path: Path
    run_id: str
    reused: bool
    metrics: dict[str, float]


def _run_phase(
    phase: str, key: str, params: dict[str, Any], tags: dict[str, Any], body: Callable[[Path], dict[str, float]]
) -> PhaseOutput:
    """Reuse a finished run with this key, else run `body(work_dir, output_dir)` in a (resumed) run."""
    work = cache_dir() / "runs" / key
    work.mkdir(parents=True, exist_ok=True)
    if distributed.world_size() > 1:
        return _run_phase_ranks(phase, key, work, params, tags, body)
    with open(work / "lock", "w") as lock:
        # One process per phase key: a concurrent pipeline waits here, then reuses the finished run. The
        # OS drops the lock when its holder dies (even by SIGKILL), so a RUNNING run found while holding
        # it is an interrupted one, safe to resume.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_phase_locked(phase, key, work, params, tags, body)


def _run_phase_ranks(
    phase: str,
    key: str,
    work: Path,
    params: dict[str, Any],
    tags: dict[str, Any],
    body: Callable[[Path, Path], dict[str, float]],
) -> PhaseOutput:
    """A multi-process launch: rank 0 decides (reuse or train) and tracks; every rank trains along."""
    reused = distributed.broadcast(_finished(phase, key, work) if distributed.is_main() else None)
    if reused is not None:
        return reused
    if distributed.is_main():
        out = _run_new(phase, key, work, params, tags, body)
    else:  # same steps, outputs written by rank 0 only (this rank's go to a scratch directory)
        with tempfile.TemporaryDirectory() as scratch:
            body(work, Path(scratch))
        out = None
    distributed.barrier()
    return distributed.broadcast(out)


def _finished(phase: str, key: str, work: Path) -> PhaseOutput | None:
    """The output of a finished run with this key (local copy, else its logged artifacts), if there is one."""
    done = tracking.find_run(key)
    if done is None:
        return None
    out_dir = work / "output"
    path = (
        out_dir
        if (out_dir / "DONE").exists()
        else Path(mlflow.artifacts.download_artifacts(run_id=done.info.run_id, artifact_path="output"))
    )
    log.info("%s: reusing finished run %s (stilts.key %s)", phase, done.info.run_id, key)
    metrics = json.loads((path / "phase_metrics.json").read_text())
    return PhaseOutput(key, path, done.info.run_id, True, metrics)


def _run_phase_locked(
    phase: str,
    key: str,
    work: Path,
    params: dict[str, Any],
    tags: dict[str, Any],
    body: Callable[[Path, Path], dict[str, float]],
) -> PhaseOutput:
    return _finished(phase, key, work) or _run_new(phase, key, work, params, tags, body)


def _run_new(
    phase: str,
    key: str,
    work: Path,
    params: dict[str, Any],
    tags: dict[str, Any],
    body: Callable[[Path, Path], dict[str, float]],
) -> PhaseOutput:
    """`body` in a new (or resumed, if unfinished) run of this key; its output logged as artifacts."""
    out_dir = work / "output"
    with tracking.start(phase, {"phase": phase, **tags}, params, key=key) as run:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        metrics = body(work, out_dir)
        (out_dir / "phase_metrics.json").write_text(json.dumps(metrics, indent=1))
        (out_dir / "DONE").write_text(key)
        mlflow.log_artifacts(str(out_dir), artifact_path="output")
        return PhaseOutput(key, out_dir, run.info.run_id, False, metrics)


def _train(
    phase: str,
    opts: Options,
    tc,
    ctx: Context,
    model: MultiTaskModel,
    train: dict[str, Encoded],
    dev: dict[str, dict[str, Encoded]],
    work: Path,
    seed: int,
    attempt: int = 0,
) -> PhaseResult:
    """One training run of a phase, its dev curve and checkpoints tracked (a restart's under `restart<n>/`)."""
    cfg = PhaseConfig(
        phase,
        tc,
        seed=seed,
        sampler=opts.sampler,
        temperature=opts.temperature,
        cap=opts.cap,
        budget=opts.budget,
        select=opts.select,
        mixed_precision=opts.mixed_precision,
    )
    prefix, label = (f"restart{attempt}/", f"{phase}-restart{attempt}") if attempt else ("", phase)
    result = train_phase(
        cfg,
        model,
        train,
        dev,
        ctx.tokenizer,
        work / (f"train-restart{attempt}" if attempt else "train"),
        on_metrics=lambda m, step: tracking.log_metrics(
            {prefix + (f"dev/{k}" if "/" in k and not k.startswith("train/") else k): v for k, v in m.items()}, step
        ),
        on_checkpoint=lambda path, step, m: tracking.log_checkpoint(path, step, m, label),
        progress=opts.progress,
    )
    if attempt:
        mlflow.log_metrics({f"{prefix}best_step": result.best_step, f"{prefix}best_score": result.best_score})
    return result


def _log_best(result: PhaseResult) -> None:
    mlflow.log_metrics({"best_step": result.best_step, "steps": result.steps, "best_score": result.best_score})
    tracking.log_metrics({f"best/{k}": v for k, v in result.best_metrics.items()})


def restart_seed(seed: int, attempt: int) -> int:
    """The seed of a target restart: another data order and head initialisation, the same encoder."""
    return seed + 1000 * attempt


def pretrain_key(opts: Options, preset: Preset) -> str:
    return tracking.make_key(
        phase="pretrain",
        data=data_key(preset.data),
        tokenizer=TOKENIZER_VERSION,
        model=key_fields(preset.model),
        train=key_fields(preset.pretrain),
        seed=opts.pretrain_seed,
        mp=opts.mixed_precision,
    )


def run_pretrain(opts: Options, ctx: Context) -> PhaseOutput:
    preset = ctx.preset
    if preset.pretrain is None:
        raise ValueError(f"preset {preset.name} starts from {preset.model.pretrained}; it has no pretrain phase")
    key = pretrain_key(opts, preset)

    def body(work: Path, out: Path) -> dict[str, float]:
        tracking.log_inputs(ctx.input_files("mlm", "train"), "train")
        model = build_model(None, [HeadSpec("mlm", "mlm")], ctx, opts.pretrain_seed)
        use_mlm_softmax(model, preset.pretrain, ctx)
        train = {"mlm": mlm_corpus(ctx, "train")}
        dev = {"mlm": {lang: ctx.encoded("mlm", "dev", lang) for lang in task_languages("mlm", "dev")}}
        start = time.monotonic()
        result = _train("pretrain", opts, preset.pretrain, ctx, model, train, dev, work, opts.pretrain_seed)
        _log_best(result)
        model.to_masked_lm().save_pretrained(str(out), safe_serialization=True)
        ctx.tokenizer.save_pretrained(str(out))
        return {"mlm_loss": result.best_metrics["mlm/loss"], "steps": result.steps, "seconds": time.monotonic() - start}

    return _run_phase(
        "pretrain",
        key,
        {
            "preset": preset.name,
            "seed": opts.pretrain_seed,
            **_flat("train", asdict(preset.pretrain)),
            **_flat("model", asdict(preset.model)),
        },
        {"preset": preset.name, "seed": opts.pretrain_seed},
        body,
    )


def use_mlm_softmax(model: MultiTaskModel, tc: TrainConfig, ctx: Context) -> None:
    """With `mlm_softmax="language"`, MLM scores each masked token against its own language's tokens (mlm.py):
    the model gets every language's vocabulary from the corpus (train and dev), the features their language."""
    if tc.mlm_softmax == "language":
        model.mlm_vocab = ctx.mlm_vocab


def mlm_corpus(ctx: Context, split: str) -> Encoded:
    """The multilingual MLM corpus of `split`, every language in one set."""
    parts = [ctx.encoded("mlm", split, lang) for lang in task_languages("mlm", split)]
    return Encoded(parts[0].task, [f for p in parts for f in p.features], parts[0].labels)


def _flat(prefix: str, d: dict) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}


def initial_encoder(opts: Options, ctx: Context) -> tuple[str | None, str]:
    """(init for build_model, lineage key): pretrained here, XLM-R from the hub/dir, or random."""
    preset = ctx.preset
    if opts.pretrain == "skip":
        return None, tracking.make_key(random=True, model=key_fields(preset.model), data=data_key(preset.data))
    if preset.model.init == "pretrained" and preset.model.pretrained.startswith(published.PREFIX):
        return published_encoder(preset)
    if preset.model.init == "pretrained":
        return preset.model.pretrained, tracking.make_key(pretrained=preset.model.pretrained)
    out = run_pretrain(opts, ctx)
    return str(out.path), out.key


_VERIFIED: set[str] = set()


def published_encoder(preset: Preset) -> tuple[str, str]:
    """The shipped encoder (verified once per process: files against the manifest's sha256, the world against
    the generator's fingerprint), registered as `stilts-mini-xlmr` on first use; the active run records which
    version it started from."""
    directory = published.path(preset.model.pretrained)
    if str(directory) not in _VERIFIED:
        published.verify(directory, preset.data)
        _VERIFIED.add(str(directory))
    if mlflow.active_run() is not None:
        mlflow.set_tag("stilts.encoder", published.register(directory))
    return str(directory), tracking.make_key(published=published.lineage_key(directory))


def fine_tune_config(tc: TrainConfig, opts: Options) -> TrainConfig:
    """Frozen embeddings and continued MLM keep what pretraining aligned; a random encoder (`pretrain=skip`)
    has nothing to keep, and frozen random embeddings would stop even English from learning."""
    return replace(tc, freeze_embeddings=False, freeze_layers=0, mlm_share=0.0) if opts.pretrain == "skip" else tc


def run_intermediate(opts: Options, ctx: Context, init: str | None, init_key: str) -> PhaseOutput:
    tc = fine_tune_config(ctx.preset.intermediate, opts)
    key = tracking.make_key(
        phase="intermediate",
        init=init_key,
        tasks=sorted(opts.tasks),
        train=key_fields(tc),
        seed=opts.seed,
        sampler=opts.sampler,
        temperature=opts.temperature,
        cap=opts.cap,
        budget=opts.budget,
        mp=opts.mixed_precision,
    )
    subset = subset_name(opts.tasks)

    def body(work: Path, out: Path) -> dict[str, float]:
        for t in opts.tasks:
            tracking.log_inputs(ctx.input_files(t, "train"), "train")
        heads = [head_for(t, ctx) for t in opts.tasks]
        train = {t: ctx.encoded(t, "train") for t in opts.tasks}
        dev = {t: {"en": ctx.encoded(t, "dev", labels=train[t].labels)} for t in opts.tasks}
        if tc.mlm_share > 0:  # continued multilingual MLM (its head comes from pretraining)
            if ctx.preset.pretrain is None:
                raise ValueError(
                    f"preset {ctx.preset.name}: intermediate mlm_share needs the preset's own MLM "
                    "corpus, which only offline presets have"
                )
            tracking.log_inputs(ctx.input_files("mlm", "train"), "train")
            heads.append(HeadSpec("mlm", "mlm"))
            train["mlm"] = mlm_corpus(ctx, "train")
        model = build_model(init, heads, ctx, opts.seed)
        if tc.mlm_share > 0:
            use_mlm_softmax(model, tc, ctx)
        result = _train("intermediate", opts, tc, ctx, model, train, dev, work, opts.seed)
        _log_best(result)
        save_multitask(model, ctx.tokenizer, out)
        return result.best_metrics

    return _run_phase(
        "intermediate",
        key,
        {
            "tasks": ",".join(opts.tasks),
            "seed": opts.seed,
            "sampler": opts.sampler,
            "temperature": opts.temperature,
            "cap": opts.cap,
            "budget": opts.budget,
            **_flat("train", asdict(tc)),
        },
        {"preset": ctx.preset.name, "subset": subset, "k": len(opts.tasks), "seed": opts.seed},
        body,
    )


def run_target(opts: Options, ctx: Context, init: str | None, init_key: str) -> PhaseOutput:
    tc = fine_tune_config(ctx.preset.target, opts)
    key = tracking.make_key(
        phase="target", init=init_key, train=key_fields(tc), seed=opts.seed, select=opts.select, mp=opts.mixed_precision
    )

    def body(work: Path, out: Path) -> dict[str, float]:
        tracking.log_inputs(ctx.input_files("xnli", "train"), "train")
        tracking.log_inputs(ctx.input_files("xnli", "dev"), "dev")
        train = {"xnli": ctx.encoded("xnli", "train")}
        dev_all = {"xnli": {lang: ctx.encoded("xnli", "dev", lang) for lang in task_languages("xnli", "dev")}}
        # Strictly zero-shot selection (`select` en) decides on English dev alone: the periodic evaluations
        # score English only (1/15 of the work), the chosen checkpoint then every language.
        dev = dev_all if opts.select == "avg" else {"xnli": {"en": dev_all["xnli"]["en"]}}
        best: PhaseResult | None = None
        for attempt in range(tc.restarts + 1):
            if attempt:
                log.warning(
                    "target: best dev score %.4f is below %s after %d steps (still on the plateau); "
                    "restart %d of %d with seed %d",
                    result.best_score,
                    tc.stop_above,
                    result.steps,
                    attempt,
                    tc.restarts,
                    restart_seed(opts.seed, attempt),
                )
            model = build_model(init, [head_for("xnli", ctx)], ctx, restart_seed(opts.seed, attempt))
            result = _train("target", opts, tc, ctx, model, train, dev, work, restart_seed(opts.seed, attempt), attempt)
            if dev is not dev_all:  # the model holds the attempt's best weights
                result = replace(
                    result,
                    best_metrics={
                        **result.best_metrics,
                        **evaluate_tasks(
                            model,
                            dev_all,
                            ctx.tokenizer.pad_token_id,
                            ctx.tokenizer.mask_token_id,
                            len(ctx.tokenizer),
                            batch_size=max(32, tc.batch_size),
                            seed=restart_seed(opts.seed, attempt),
                            device=next(model.parameters()).device,
                        ),
                    },
                )
            if best is None or result.best_score > best.best_score:
                best, best_attempt = result, attempt
                model.save_sequence_classification(out, ctx.tokenizer)
            if result.best_score >= tc.stop_above:
                break
        _log_best(best)
        mlflow.log_metrics({"attempts": attempt + 1, "best_attempt": best_attempt})
        return {**best.best_metrics, ATTEMPTS: attempt + 1}

    return _run_phase(
        "target",
        key,
        {"seed": opts.seed, "select": opts.select, **_flat("train", asdict(tc))},
        {"preset": ctx.preset.name, "seed": opts.seed, "k": len(opts.tasks), "subset": subset_name(opts.tasks)},
        body,
    )


def run_evaluate(opts: Options, ctx: Context, model_dir: str, model_key: str) -> PhaseOutput:
    key = tracking.make_key(phase="evaluate", model=model_key, data=data_key(ctx.preset.data))

    def body(work: Path, out: Path) -> dict[str, float]:
        tracking.log_inputs(ctx.input_files("xnli", "test"), "test")
        model = MultiTaskModel.from_sequence_classification(model_dir)
        sets = {lang: ctx.encoded("xnli", "test", lang) for lang in task_languages("xnli", "test")}
        metrics, confusion = zero_shot(model, sets, ctx.tokenizer)
        tracking.log_metrics(metrics)
        mlflow.log_table(report_table(metrics), "xnli_test_accuracy.json")
        mlflow.log_dict(confusion, "confusion_matrices.json")
        fig = report_figure(
            metrics,
            confusion,
            f"zero-shot XNLI test ({ctx.preset.name}"
            f"{', synthetic world' if ctx.preset.data.source == 'synthetic' else ''})",
        )
        mlflow.log_figure(fig, "xnli_test_accuracy.png")
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "confusion": confusion}, indent=1))
        return metrics

    return _run_phase(
        "evaluate",
        key,
        {"model": model_dir},
        {"preset": ctx.preset.name, "seed": opts.seed, "k": len(opts.tasks)},
        body,
    )


def run_through_target(opts: Options, ctx: Context) -> PhaseOutput:
    """pretrain (or XLM-R / random) -> intermediate (if tasks) -> target, each cached."""
    init, init_key = initial_encoder(opts, ctx)
    if opts.tasks:
        mid = run_intermediate(opts, ctx, init, init_key)
        init, init_key = str(mid.path), mid.key
    return run_target(opts, ctx, init, init_key)


def run_pipeline(opts: Options) -> dict[str, Any]:
    """pretrain -> intermediate (if tasks) -> target -> evaluate, as nested runs of the active run."""
    if distributed.is_main():
        ctx = context_for(opts.resolve(), opts.progress)  # builds the data and tokenizer caches once
    distributed.barrier()
    if not distributed.is_main():
        ctx = context_for(opts.resolve(), opts.progress)
    target = run_through_target(opts, ctx)
    ev = run_evaluate(opts, ctx, str(target.path), target.key)
    dev = {f"dev/{k}": v for k, v in target.metrics.items() if k != ATTEMPTS}
    return {
        "target": target,
        "evaluate": ev,
        "metrics": {**dev, "target/attempts": target.metrics.get(ATTEMPTS, 1), **ev.metrics},
    }
