"""Training throughput: our loop (stilts_mlflow.train.train_phase) vs Hugging Face `Trainer` on the same
model, data and hyperparameters, and the achieved FLOP/s as a share of this CPU's matmul peak (MFU).

Both are timed from the call that starts training to the end of the last optimizer step: set-up and the
first steps are inside for both; our final dev evaluation and checkpoint, which come after the last
step, are not (Trainer here evaluates and saves nothing). Each case runs `repeats` times from the same
initial weights, the two loops taking turns to go first (whichever runs first in a process pays for its
cold caches and allocator); the medians are compared, and every repeat's ratio is kept.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from stilts_mlflow.features import Encoded
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.presets import ModelConfig, TrainConfig
from stilts_mlflow.train import PhaseConfig, train_phase

log = logging.getLogger(__name__)

# XLM-R base's encoder (Conneau et al. 2020); the embedding table uses the local tokenizer's vocabulary,
# which changes no matmul work in the encoder.
XLMR_BASE = ModelConfig(
    hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_length=128, dropout=0.1
)


@dataclass(frozen=True)
class TrainCase:
    name: str
    model: ModelConfig
    kind: str  # classification (XNLI target fine-tune) | mlm (pretraining)
    batch_size: int
    steps: int
    learning_rate: float = 5e-4


def training_flops(model: ModelConfig, vocab: int, tokens: float, seq: float, predicted: float) -> float:
    """Model FLOPs of one optimizer step: 6 x matmul parameters x tokens (forward + backward), attention
    scores and values (12 x layers x hidden x sequence per token), and the MLM output projection on the
    `predicted` (masked) tokens."""
    d, f, layers = model.hidden_size, model.intermediate_size, model.num_layers
    per_token = 6 * layers * (4 * d * d + 2 * d * f) + 12 * layers * d * seq
    return per_token * tokens + 6 * (d * d + d * vocab) * predicted


def seconds_to_last_step(
    cfg: PhaseConfig,
    model: MultiTaskModel,
    train: dict[str, Encoded],
    dev: dict[str, dict[str, Encoded]],
    tokenizer,
    work: Path,
) -> float:
    """Our loop's time from the call to the end of its last optimizer step (the final dev evaluation and
    checkpoint, which come after it, are left out)."""
    ended: list[float] = []

    def on_metrics(metrics: dict, step: int) -> None:
        if step == cfg.train.steps and "train/loss" in metrics:
            ended.append(time.perf_counter())

    start = time.perf_counter()
    train_phase(cfg, model, train, dev, tokenizer, work, on_metrics=on_metrics, progress=False)
    return ended[0] - start


def _ours(case: TrainCase, model: MultiTaskModel, data: Encoded, dev: Encoded, tokenizer, work: Path) -> float:
    dev_key = "xnli" if case.kind == "classification" else "mlm"
    cfg = PhaseConfig(
        "target" if case.kind == "classification" else "pretrain",
        TrainConfig(
            learning_rate=case.learning_rate,
            batch_size=case.batch_size,
            steps=case.steps,
            warmup_ratio=0.1,
            eval_every=case.steps,
            checkpoint_every=case.steps,
        ),
    )
    return seconds_to_last_step(cfg, model, {dev_key: data}, {dev_key: {"en": dev}}, tokenizer, work)


def _trainer(
    case: TrainCase, model: torch.nn.Module, data: Encoded, tokenizer, work: Path, compile: bool = False
) -> tuple[float, float]:
    """Trainer's time from `train()` to its last optimizer step, and its time over the second half of the
    steps (with `compile`, the first half carries inductor's compilation)."""
    from datasets import Dataset
    from transformers import (
        DataCollatorForLanguageModeling,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    keep = ("input_ids", "labels") if case.kind == "classification" else ("input_ids",)
    dataset = Dataset.from_list([{k: f[k] for k in keep} for f in data.features])
    collator = (
        DataCollatorWithPadding(tokenizer)
        if case.kind == "classification"
        else DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    )
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=case.batch_size,
        learning_rate=case.learning_rate,
        max_steps=case.steps,
        warmup_steps=int(0.1 * case.steps),
        weight_decay=0.01,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        torch_compile=compile,
    )
    ended: dict[int, float] = {}
    half = case.steps // 2

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (half, case.steps):
                ended[state.global_step] = time.perf_counter()

    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[StepClock()])
    start = time.perf_counter()
    trainer.train()
    return ended[case.steps] - start, ended[case.steps] - ended[half]


def _fresh_models(case: TrainCase, vocab: int) -> tuple[MultiTaskModel, torch.nn.Module]:
    """Our multi-task model and the transformers model holding the same freshly initialised weights."""
    from transformers import XLMRobertaForMaskedLM

    head = HeadSpec("nli", "classification", 3) if case.kind == "classification" else HeadSpec("mlm", "mlm")
    torch.manual_seed(0)
    ours_model = MultiTaskModel(encoder_config(case.model, vocab), [head])
    hf_model = ours_model.to_sequence_classification() if case.kind == "classification" else ours_model.to_masked_lm()
    if isinstance(hf_model, XLMRobertaForMaskedLM):
        hf_model.tie_weights()
    return ours_model, hf_model


def run_case(case: TrainCase, data: Encoded, dev: Encoded, tokenizer, repeats: int = 1, compiled: bool = False) -> dict:
    """Both loops on the same freshly initialised weights, `repeats` times in alternating order; median
    throughput, FLOP/s and their ratio (MFU comes with `add_mfu`, once the peak is known). `compiled`: also
    Trainer with `torch_compile=True` once, timed the same way and over its second half of steps."""
    vocab = len(tokenizer)
    lengths = np.array(data.lengths())
    tokens = case.batch_size * float(lengths.mean())
    predicted = 0.15 * tokens if case.kind == "mlm" else 0.0
    flops = training_flops(case.model, vocab, tokens, float(lengths.mean()), predicted)
    seconds: dict[str, list[float]] = {"ours": [], "trainer": []}
    for repeat in range(repeats):
        ours_model, hf_model = _fresh_models(case, vocab)
        with tempfile.TemporaryDirectory() as tmp:
            runs = {
                "ours": lambda: _ours(case, ours_model, data, dev, tokenizer, Path(tmp) / "ours"),
                "trainer": lambda: _trainer(case, hf_model, data, tokenizer, Path(tmp) / "trainer")[0],
            }
            for name in ("ours", "trainer") if repeat % 2 == 0 else ("trainer", "ours"):
                seconds[name].append(runs[name]())
    out = {
        "case": case.name,
        "kind": case.kind,
        "steps": case.steps,
        "batch_size": case.batch_size,
        "mean_tokens_per_example": round(float(lengths.mean()), 1),
        "repeats": repeats,
    }
    for name, times in seconds.items():
        median = statistics.median(times)
        out[name] = {
            "seconds": round(median, 3),
            "seconds_per_repeat": [round(t, 3) for t in times],
            "examples_per_s": round(case.steps * case.batch_size / median, 1),
            "tokens_per_s": round(case.steps * tokens / median, 0),
            "gflops_per_s": round(case.steps * flops / median / 1e9, 2),
        }
    out["speedup_vs_trainer"] = round(out["trainer"]["seconds"] / out["ours"]["seconds"], 3)
    if compiled:
        _, hf_model = _fresh_models(case, vocab)
        with tempfile.TemporaryDirectory() as tmp:
            total, second_half = _trainer(case, hf_model, data, tokenizer, Path(tmp), compile=True)
        half_steps = case.steps - case.steps // 2
        out["trainer_compiled"] = {
            "seconds": round(total, 3),
            "examples_per_s": round(case.steps * case.batch_size / total, 1),
            "second_half_examples_per_s": round(half_steps * case.batch_size / second_half, 1),
        }
        out["speedup_vs_trainer_compiled"] = round(total / out["ours"]["seconds"], 3)
        log.info(
            "training %s: Trainer torch_compile=True %.1f ex/s (%.1f ex/s over its second half), ours x%.2f",
            case.name,
            out["trainer_compiled"]["examples_per_s"],
            out["trainer_compiled"]["second_half_examples_per_s"],
            out["speedup_vs_trainer_compiled"],
        )
    out["speedup_per_repeat"] = [round(t / o, 3) for o, t in zip(seconds["ours"], seconds["trainer"])]
    log.info(
        "training %s: ours %.1f ex/s, Trainer %.1f ex/s (x%.2f, repeats %s), %.1f GFLOP/s",
        case.name,
        out["ours"]["examples_per_s"],
        out["trainer"]["examples_per_s"],
        out["speedup_vs_trainer"],
        out["speedup_per_repeat"],
        out["ours"]["gflops_per_s"],
    )
    return out


def add_mfu(rows: list[dict], peak_flops: float) -> list[dict]:
    """Each loop's achieved FLOP/s as a share of the machine's measured matmul peak."""
    for r in rows:
        for side in ("ours", "trainer"):
            r[side]["mfu"] = round(r[side]["gflops_per_s"] * 1e9 / peak_flops, 4)
    return rows


def cases(quick: bool) -> list[TrainCase]:
    from stilts_mlflow.presets import get_preset

    tiny = get_preset("tiny").model  # the shipped stilts-mini-xlmr's architecture
    return [
        TrainCase("tiny, XNLI target fine-tune", tiny, "classification", 64, 60 if quick else 300),
        TrainCase("tiny, MLM pretraining", tiny, "mlm", 64, 40 if quick else 200, 2e-3),
        TrainCase(
            "xlmr-base-sized (random init), XNLI target",
            replace(XLMR_BASE, num_layers=2 if quick else 12),
            "classification",
            8,
            3 if quick else 6,
            1e-5,
        ),
    ]


def run(ctx, quick: bool) -> list[dict]:
    repeats = 1 if quick else 3
    data = ctx.encoded("xnli", "train")
    dev = Encoded(data.task, ctx.encoded("xnli", "dev", "en").features[:64], data.labels)
    mlm = ctx.encoded("mlm", "train", "en")
    mlm_dev = Encoded(mlm.task, ctx.encoded("mlm", "dev", "en").features[:32], mlm.labels)
    results = []
    for case in cases(quick):
        if case.model.num_layers != XLMR_BASE.num_layers and case.model.hidden_size == XLMR_BASE.hidden_size:
            case = replace(case, name=f"{case.name} [{case.model.num_layers} of 12 layers]")
        results.append(
            run_case(
                case,
                *((data, dev) if case.kind == "classification" else (mlm, mlm_dev)),
                ctx.tokenizer,
                repeats,
                compiled=case.kind == "classification" and not quick,
            )
        )
    return results
