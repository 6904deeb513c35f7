"""One training loop for all three phases (MLM pretraining, multi-task intermediate, target fine-tune).

Read it top to bottom, as nanoGPT's: set up -> resume if a checkpoint exists -> for each step pick a
task, take a length-bucketed batch, accumulate gradients, clip, AdamW step, warmup/decay schedule ->
evaluate on dev every `eval_every` steps, keep the best weights -> checkpoint every
`checkpoint_every` steps. accelerate supplies devices, data parallelism and mixed precision, so the
same code runs on a laptop CPU or N GPUs (`accelerate launch`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from safetensors.torch import load_model, save_model
from torch.utils.hooks import RemovableHandle
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from stilts_mlflow import averaging, checkpoint, noise
from stilts_mlflow.choices import BUDGETS
from stilts_mlflow.early_stopping import EarlyStopping
from stilts_mlflow.evaluate import evaluate_tasks
from stilts_mlflow.features import Encoded, collate
from stilts_mlflow.model import MultiTaskModel
from stilts_mlflow import word_shuffle
from stilts_mlflow.neighbours import swap
from stilts_mlflow.presets import TrainConfig
from stilts_mlflow.sampling import BatchStream, choose_task, task_weights, with_mlm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseConfig:
    phase: str  # pretrain | intermediate | target
    train: TrainConfig
    seed: int = 0
    sampler: str = "proportional"
    temperature: float = 2.0
    cap: int = 0
    budget: str = "fixed"
    select: str = "en"  # target: "en" (strictly zero-shot) or "avg" (dev average over the languages)
    mixed_precision: str = "no"  # no | fp16 | bf16


@dataclass
class PhaseResult:
    steps: int
    best_step: int
    best_score: float
    best_metrics: dict[str, float]
    history: list[dict[str, Any]]


def total_steps(cfg: PhaseConfig, train_sets: dict[str, Encoded]) -> int:
    tc = cfg.train
    if cfg.budget not in BUDGETS:
        raise ValueError(f"unknown budget {cfg.budget!r}; allowed: {', '.join(BUDGETS)}")
    tasks = [t for t in train_sets if not _continued_mlm(cfg, t)]
    if tc.epochs > 0:
        examples = sum(len(train_sets[t].features) for t in tasks)
        steps = math.ceil(tc.epochs * examples / (tc.batch_size * tc.grad_accum))
        return max(1, round(steps / (1.0 - tc.mlm_share)))  # the epochs are the tasks', MLM comes on top
    return tc.steps * (len(tasks) if cfg.budget == "per-task" else 1)


def _continued_mlm(cfg: PhaseConfig, task: str) -> bool:
    """`task` is continued MLM beside the phase's tasks (intermediate mlm_share), not a task of its own."""
    return task == "mlm" and cfg.train.mlm_share > 0


def phase_weights(cfg: PhaseConfig, train_sets: dict[str, Encoded]) -> dict[str, float]:
    """Sampling weights: the sampler's over the tasks, continued MLM (if any) at its fixed share."""
    sizes = {t: len(e.features) for t, e in train_sets.items() if not _continued_mlm(cfg, t)}
    weights = task_weights(sizes, cfg.sampler, cfg.temperature, cfg.cap)
    if cfg.train.mlm_share > 0:
        if "mlm" not in train_sets:
            raise ValueError(f"{cfg.phase}: mlm_share {cfg.train.mlm_share} needs an 'mlm' training set")
        weights = with_mlm(weights, cfg.train.mlm_share)
    return weights


def selection_score(phase: str, metrics: dict[str, float], select: str) -> float:
    """Higher is better. pretrain: -dev loss; intermediate: mean task metric; target: en or average."""
    if phase == "pretrain":
        return -metrics["mlm/loss"]
    if phase == "target":
        return metrics["xnli/accuracy.en"] if select == "en" else metrics["xnli/accuracy.avg"]
    task_metrics = [v for k, v in metrics.items() if k.count("/") == 1 and "." not in k]
    return sum(task_metrics) / max(1, len(task_metrics))


def _optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    frozen = tuple(f"roberta.encoder.layer.{i}." for i in range(tc.freeze_layers))
    for name, p in model.named_parameters():
        if (tc.freeze_embeddings and "word_embeddings" in name) or name.startswith(frozen):
            p.requires_grad_(False)  # English-only updates would pull English words away from the others
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    # fused: one kernel per step for all parameters (CPU and CUDA); torch's default here was the per-tensor
    # loop, 15% of a tiny-model step (benchmarks/training.py)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.learning_rate,
        fused=True,
    )


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    save_model(model, tmp)
    os.replace(tmp, path)


@dataclass
class _Loop:
    """What a phase's training loop holds between steps (checkpointed: model, optimizer, scheduler, masking
    RNG, task streams, early stopping and `state`)."""

    accelerator: Accelerator
    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped when distributed)
    raw: MultiTaskModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator  # MLM masking
    streams: dict[str, BatchStream]
    weights: dict[str, float]
    stopper: EarlyStopping
    state: dict[str, Any]
    noise: RemovableHandle | None = None  # the embedding-noise hook (noise.py), removed when the phase ends
    average: torch.nn.Module | None = None  # the weight average (averaging.py), evaluated and kept instead of `raw`
    neighbours: torch.Tensor | None = None  # cross-lingual neighbour table for token swaps (neighbours.py)
    word_starts: torch.Tensor | None = None  # per token id: does it open a word (word_shuffle.py)
    special: torch.Tensor | None = None  # the tokenizer's special ids, which a word shuffle never moves

    def augmenting(self) -> bool:
        """Whether training batches are augmented now (swaps, shuffles): from the step the state records."""
        return self.state.get("augment_from_step") is not None

    def kept(self) -> torch.nn.Module:
        """The weights that dev evaluation scores and the phase keeps."""
        return self.average.module if self.average is not None else self.raw

    def extra(self) -> dict[str, torch.nn.Module]:
        return {"average": self.average} if self.average is not None else {}


def _prepare(
    cfg: PhaseConfig,
    model: MultiTaskModel,
    train_sets: dict[str, Encoded],
    work_dir: Path,
    neighbours: torch.Tensor | None = None,
) -> _Loop:
    """Devices, optimizer and schedule, task streams; resumed from `work_dir/last` when a checkpoint is there."""
    tc = cfg.train
    # One shared encoder, a head per task, one task per batch: the other heads get no gradient in a step,
    # which DistributedDataParallel must be told to expect.
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(cfg.seed)
    world = accelerator.num_processes
    if tc.batch_size % world:
        raise ValueError(f"batch_size {tc.batch_size} must be divisible by the {world} processes")
    if world > 1:
        log.info("%s: data parallel on %d processes (%s)", cfg.phase, world, accelerator.distributed_type)
    streams = {t: BatchStream(t, enc.lengths(), tc.batch_size, cfg.seed) for t, enc in train_sets.items()}
    weights = phase_weights(cfg, train_sets)
    total = total_steps(cfg, train_sets)
    optimizer = _optimizer(model, tc)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total), total)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(prepared)
    generator = torch.Generator().manual_seed(cfg.seed)
    state: dict[str, Any] = {
        "step": 0,
        "best_metrics": {},
        "history": [],
        "streams": {},
        "config": asdict(cfg),
        "total": total,
    }
    stopper = EarlyStopping.from_config(tc)
    average = averaging.make(raw, tc.weight_average)  # before the noise hook, which it would copy
    noisy = noise.attach(raw.roberta.embeddings.word_embeddings, tc.embedding_noise)
    loop = _Loop(
        accelerator, prepared, raw, optimizer, scheduler, generator, streams, weights, stopper, state, noisy, average
    )
    if tc.neighbour_swap > 0:
        if neighbours is None:
            raise ValueError(f"{cfg.phase}: neighbour_swap {tc.neighbour_swap} needs a neighbour table")
        loop.neighbours = neighbours
    if tc.augments and tc.augment_from <= 0:
        state["augment_from_step"] = 0
    last = checkpoint.find(work_dir / "last")
    if last is not None:
        state = loop.state = checkpoint.load(last, raw, optimizer, scheduler, generator, loop.extra())
        stopper.load_state_dict(state)
        for t, s in state["streams"].items():
            streams[t].load(s)
        log.info("%s: resuming from step %d (%s)", cfg.phase, state["step"], last)
    return loop


def _step(loop: _Loop, cfg: PhaseConfig, train_sets: dict[str, Encoded], tokenizer, step: int):
    """One optimizer step: `grad_accum` micro-batches (a task each, drawn by the sampler), clip, AdamW, schedule.
    Returns the last micro-batch's task and loss."""
    tc, acc = cfg.train, loop.accelerator
    world, rank = acc.num_processes, acc.process_index
    for micro in range(tc.grad_accum):
        task = choose_task(loop.weights, cfg.seed, step * tc.grad_accum + micro)
        enc = train_sets[task]
        index = loop.streams[task].next()[rank::world]
        batch = collate(
            enc.task.kind,
            [enc.features[i] for i in index],
            tokenizer.pad_token_id,
            tokenizer.mask_token_id,
            len(tokenizer),
            mlm_probability=tc.mlm_probability,
            generator=loop.generator,
        )
        if loop.augmenting() and enc.task.kind == "classification":
            if loop.neighbours is not None:
                batch["input_ids"] = swap(batch["input_ids"], loop.neighbours, tc.neighbour_swap, loop.generator)
            if loop.word_starts is not None:
                batch["input_ids"] = word_shuffle.shuffle(
                    batch["input_ids"], loop.word_starts, loop.special, tc.word_shuffle, loop.generator
                )
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        sync = micro == tc.grad_accum - 1
        with contextlib.nullcontext() if sync else acc.no_sync(loop.model), acc.autocast():
            loss, _ = loop.model(enc.task.head, **batch)
            acc.backward(loss / tc.grad_accum)
    acc.clip_grad_norm_(loop.model.parameters(), 1.0)
    loop.optimizer.step()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    if loop.average is not None:
        loop.average.update_parameters(loop.raw)
    return task, loss


def _evaluate(
    loop: _Loop,
    cfg: PhaseConfig,
    dev_sets: dict[str, dict[str, Encoded]],
    tokenizer,
    step: int,
    work_dir: Path,
    on_metrics,
) -> None:
    """Dev metrics and the selection score; a new best's weights saved to `work_dir/best.safetensors`."""
    metrics = evaluate_tasks(
        loop.kept(),
        dev_sets,
        tokenizer.pad_token_id,
        tokenizer.mask_token_id,
        len(tokenizer),
        batch_size=max(32, cfg.train.batch_size),
        seed=cfg.seed,
        device=loop.accelerator.device,
    )
    score = selection_score(cfg.phase, metrics, cfg.select)
    loop.state["history"].append({"step": step, "score": score, **metrics})
    main = loop.accelerator.is_main_process
    if loop.stopper.update(score, step):
        loop.state["best_metrics"] = metrics
        if main:
            _save_weights(loop.kept(), work_dir / "best.safetensors")
    if on_metrics and main:
        on_metrics({**metrics, "select_score": score}, step)
    log.info(
        "%s step %d: %s",
        cfg.phase,
        step,
        ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if "." not in k or k.endswith((".avg", ".en"))),
    )


def _start_augmenting(loop: _Loop, cfg: PhaseConfig, step: int) -> None:
    """Start the augmentations (neighbour swaps, word shuffle) once the best dev score reaches `augment_from`:
    a second stage whose early stopping starts afresh, so the weights kept have trained with them."""
    tc, stopper = cfg.train, loop.stopper
    if not tc.augments or loop.augmenting() or stopper.best_score is None:
        return
    if stopper.best_score >= tc.augment_from:
        log.info(
            "%s: best dev score %.4f reached %s at step %d, augmentations start",
            cfg.phase,
            stopper.best_score,
            tc.augment_from,
            step,
        )
        loop.state["augment_from_step"] = step
        stopper.restart()


def _checkpoint(loop: _Loop, work_dir: Path, step: int, on_checkpoint) -> None:
    loop.state["streams"] = {t: s.state() for t, s in loop.streams.items()}
    loop.state.update(loop.stopper.state_dict())
    path = checkpoint.save(
        work_dir / "last", loop.raw, loop.optimizer, loop.scheduler, loop.generator, loop.state, loop.extra()
    )
    if on_checkpoint:
        on_checkpoint(path, step, loop.state["history"][-1] if loop.state["history"] else {})


def train_phase(
    cfg: PhaseConfig,
    model: MultiTaskModel,
    train_sets: dict[str, Encoded],
    dev_sets: dict[str, dict[str, Encoded]],
    tokenizer,
    work_dir: Path,
    on_metrics: Callable[[dict[str, float], int], None] | None = None,
    on_checkpoint: Callable[[Path, int, dict[str, float]], None] | None = None,
    progress: bool = True,
    neighbours: torch.Tensor | None = None,
) -> PhaseResult:
    """Train `model` in place on `train_sets`; at the end it holds the best dev weights. `neighbours`: the
    table for `neighbour_swap` (neighbours.py), built from the phase's starting weights."""
    tc, work_dir = cfg.train, Path(work_dir)
    loop = _prepare(cfg, model, train_sets, work_dir, neighbours)
    if tc.word_shuffle > 0:
        loop.word_starts = word_shuffle.word_starts(tokenizer)
        loop.special = torch.tensor(tokenizer.all_special_ids)
    state, main = loop.state, loop.accelerator.is_main_process
    bar = tqdm(
        total=state["total"], initial=state["step"], desc=cfg.phase, disable=not progress or not main, mininterval=2
    )
    loop.model.train()
    while state["step"] < state["total"]:
        task, loss = _step(loop, cfg, train_sets, tokenizer, state["step"])
        state["step"] = step = state["step"] + 1
        _fault_injection(cfg.phase, step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", task=task, refresh=False)
        done = step == state["total"]
        if on_metrics and main and (step % 50 == 0 or done):
            on_metrics(
                {
                    "train/loss": loss.item(),
                    "train/lr": loop.scheduler.get_last_lr()[0],
                    "train/processes": loop.accelerator.num_processes,
                },
                step,
            )
        if step % tc.eval_every == 0 or done:
            _evaluate(loop, cfg, dev_sets, tokenizer, step, work_dir, on_metrics)
            loop.model.train()
            _start_augmenting(loop, cfg, step)
            if loop.stopper.should_stop(step):
                log.info("%s: no improvement in %d evaluations, stopping at step %d", cfg.phase, tc.patience, step)
                done, state["total"] = True, step
            elif loop.stopper.gives_up(step):
                log.info(
                    "%s: best dev score %.4f is still below %s at step %d, giving up this attempt",
                    cfg.phase,
                    loop.stopper.best_score,
                    tc.stop_above,
                    step,
                )
                done, state["total"] = True, step
        if (step % tc.checkpoint_every == 0 or done) and main:
            _checkpoint(loop, work_dir, step, on_checkpoint)
        if done:
            break
    bar.close()
    if loop.noise is not None:
        loop.noise.remove()
    loop.accelerator.wait_for_everyone()
    if (work_dir / "best.safetensors").exists():
        load_model(loop.raw, str(work_dir / "best.safetensors"))
    return PhaseResult(
        state["step"], loop.stopper.best_step, loop.stopper.best_score, state["best_metrics"], state["history"]
    )


_FAULT_HITS: dict[str, int] = {}


def _fault_injection(phase: str, step: int) -> None:
    """Tests set STILTS_FAULT_KILL_AT=<phase>:<step>[#<n>] to SIGKILL this process right after that step (of
    the n-th run of that phase in this process, default the first: `target:9#3` dies in a study's third
    pipeline), or STILTS_FAULT_HANG_AT=<phase>:<step> to stop there for good, once the file
    $STILTS_CACHE/fault-hang says where (a cluster node's test kills the node then)."""
    if os.environ.get("STILTS_FAULT_HANG_AT") == f"{phase}:{step}":
        log.warning("fault injection: hanging at %s step %d", phase, step)
        marker = Path(os.environ.get("STILTS_CACHE", ".stilts_cache")) / "fault-hang"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{phase}:{step} pid {os.getpid()}\n")
        while True:
            time.sleep(60)
    target = os.environ.get("STILTS_FAULT_KILL_AT")
    if not target:
        return
    where, _, nth = target.partition("#")
    if where != f"{phase}:{step}":
        return
    _FAULT_HITS[where] = _FAULT_HITS.get(where, 0) + 1
    if _FAULT_HITS[where] == int(nth or 1):
        log.warning("fault injection: SIGKILL at %s step %d", phase, step)
        os.kill(os.getpid(), signal.SIGKILL)
