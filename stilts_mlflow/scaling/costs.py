"""What one pipeline of a study costs, phase by phase: measured, or modelled from throughput.

- **Measured** (CPU presets): the median duration of this preset's finished `intermediate`, `target` and
  `evaluate` runs in the tracking store (`MLFLOW_TRACKING_URI`, else `./mlflow.db` where it exists), or else
  those of the shipped reference study (reference/*.json, and the host it names), with the measured study
  overhead per pipeline (registration, ONNX export) on top.
- **Modelled** (GPU presets): tokens to process = examples x epochs x tokens per example, at the preset's
  `Throughput` (presets.py) plus a fixed cost per micro-batch; dev evaluations every `eval_every` steps and the
  final 15-language test run forward only. The real datasets' sizes are their public split sizes; tokens per
  example are rough XLM-R subword means (all choices of a multiple-choice question, capped at max_length).
  Early stopping (`patience`) can only shorten a phase: the figures are for the full schedule.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from stilts_mlflow.presets import Preset, TrainConfig
from stilts_mlflow.scaling.noise import load
from stilts_mlflow.tasks.loaders import XNLI_LANGUAGES

log = logging.getLogger(__name__)
PHASES = ("intermediate", "target", "evaluate")


@dataclass(frozen=True)
class RealData:
    train: int
    dev: int  # per language for xnli
    tokens: int  # mean tokens per example
    test: int = 0


REAL_DATA = {
    "xnli": RealData(392_702, 2_490, 48, test=5_010),  # English train = MNLI's; dev and test per language
    "mnli": RealData(392_702, 9_815, 48),
    "anli": RealData(100_459, 1_200, 90),  # round 3
    "qqp": RealData(363_846, 40_430, 32),
    "squad": RealData(87_599, 10_570, 170),
    "squad_v2": RealData(130_319, 11_873, 170),
    "hellaswag": RealData(39_905, 10_042, 300),  # 4 endings
    "ccg": RealData(39_604, 1_913, 35),  # CCGbank sections 02-21 / 00
    "cosmosqa": RealData(25_262, 2_985, 480),  # 4 answers
    "commonsenseqa": RealData(9_741, 1_221, 125),  # 5 answers
}


@dataclass(frozen=True)
class PipelineCost:
    """Seconds a pipeline of `k` tasks spends in each phase (GPU seconds for GPU presets)."""

    seconds: dict[str, float]
    evaluating: float = 0.0  # of which dev evaluations inside the training phases (modelled costs only)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class CostModel:
    source: str
    per_phase: dict[str, float]  # CPU presets: measured seconds per phase (intermediate: any k > 0)
    overhead: float = 0.0  # seconds per pipeline on top (registration, export)
    parallel: int = 1  # pipelines at once when these were measured
    preset: Preset | None = None  # GPU presets: modelled from its throughput
    gpu: str = ""
    tokens_per_second: float = 0.0

    @property
    def on_gpu(self) -> bool:
        return self.preset is not None

    @property
    def known(self) -> bool:
        return self.on_gpu or bool(self.per_phase)

    def pipeline(self, subset: tuple[str, ...], budget: str = "fixed") -> PipelineCost:
        if self.on_gpu:
            return self._modelled(subset)
        seconds = dict(self.per_phase)
        if not subset:
            seconds["intermediate"] = 0.0
        elif budget == "per-task":
            seconds["intermediate"] *= len(subset)
        return PipelineCost(seconds)

    # --- GPU presets ---------------------------------------------------------------------------------------
    def _train_seconds(self, tc: TrainConfig, examples: int, tokens: float) -> tuple[float, int]:
        epochs = tc.epochs if tc.epochs > 0 else 1.0
        micro_batches = math.ceil(epochs * examples / tc.batch_size)
        steps = math.ceil(micro_batches / tc.grad_accum)
        seconds = epochs * tokens / self.tokens_per_second + micro_batches * self.preset.throughput.batch_overhead_s
        return seconds, steps

    def _forward_seconds(self, examples: int, tokens: float) -> float:
        speed = self.tokens_per_second * self.preset.throughput.eval_speedup
        return tokens / speed + math.ceil(examples / 32) * self.preset.throughput.batch_overhead_s / 3

    def _modelled(self, subset: tuple[str, ...]) -> PipelineCost:
        p, x = self.preset, REAL_DATA["xnli"]
        seconds = {"intermediate": 0.0}
        evaluating = 0.0
        if subset:
            data = [REAL_DATA[t] for t in subset]
            train, steps = self._train_seconds(
                p.intermediate, sum(d.train for d in data), sum(d.train * d.tokens for d in data)
            )
            dev = self._forward_seconds(sum(d.dev for d in data), sum(d.dev * d.tokens for d in data))
            evaluating += steps // p.intermediate.eval_every * dev
            seconds["intermediate"] = train + steps // p.intermediate.eval_every * dev
        train, steps = self._train_seconds(p.target, x.train, x.train * x.tokens)
        dev = steps // p.target.eval_every * self._forward_seconds(x.dev, x.dev * x.tokens)
        evaluating += dev
        seconds["target"] = train + dev
        n = len(XNLI_LANGUAGES)
        seconds["evaluate"] = self._forward_seconds(n * (x.dev + x.test), n * (x.dev + x.test) * x.tokens)
        return PipelineCost(seconds, evaluating)


def _tracking_durations(preset: str) -> dict[str, list[float]]:
    """Durations of this preset's finished phase runs in the tracking store, if there is one to read."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and not Path("mlflow.db").is_file():
        return {}
    import mlflow

    if not uri:
        mlflow.set_tracking_uri(f"sqlite:///{Path('mlflow.db').resolve()}")
    try:
        runs = mlflow.search_runs(
            search_all_experiments=True,
            max_results=2000,
            output_format="list",
            filter_string=f"tags.`stilts.preset` = '{preset}' and attributes.status = 'FINISHED'",
        )
    except Exception as exc:  # an unreachable server: plan from the reference instead
        log.warning("tracking store not read (%s): phase costs from the reference study", exc)
        return {}
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    for r in runs:
        phase = r.data.tags.get("stilts.phase")
        if phase in out and r.info.end_time:
            out[phase].append((r.info.end_time - r.info.start_time) / 1000)
    return out


def for_preset(preset: Preset, gpu: str | None = None, tokens_per_second: float | None = None) -> CostModel:
    """The cost model the planner uses for `preset`: modelled on its throughput where it has one, else measured
    here (tracking store), else the reference study's measurements."""
    if preset.throughput is not None:
        gpu = gpu or preset.throughput.gpu
        speeds = preset.throughput.tokens_per_second
        if tokens_per_second is None and gpu not in speeds:
            raise ValueError(
                f"gpu {gpu!r} has no assumed throughput for {preset.name}; give --tokens-per-second or "
                f"one of {', '.join(speeds)}"
            )
        speed = tokens_per_second or speeds[gpu]
        if speed <= 0:
            raise ValueError(f"tokens_per_second must be > 0; got {speed}")
        return CostModel(
            f"modelled: {speed:,.0f} training tokens/s on {gpu} ({preset.throughput.basis}"
            + (", overridden" if tokens_per_second else "")
            + ")",
            {},
            preset=preset,
            gpu=gpu,
            tokens_per_second=speed,
        )
    durations = _tracking_durations(preset.name)
    if all(len(durations.get(p, [])) >= 3 for p in PHASES):
        return CostModel(
            f"measured: mean of {sum(map(len, durations.values()))} finished {preset.name} phase runs "
            "in the tracking store",
            {p: statistics.fmean(durations[p]) for p in PHASES},
            parallel=1,
        )
    ref = load(None)
    if ref["preset"] != preset.name:
        return CostModel(f"none: no finished {preset.name} phase runs in the tracking store to time", {})
    runs = ref["runs"]
    per_phase = {p: statistics.fmean(r["phase_seconds"][p] for r in runs if p in r["phase_seconds"]) for p in PHASES}
    overhead = max(0.0, ref["study_seconds"] - sum(sum(r["phase_seconds"].values()) for r in runs) / ref["parallel"])
    return CostModel(
        f"measured on the reference study ({ref['host']}, {ref['parallel']} pipelines at a time)",
        per_phase,
        overhead / len(runs),
        ref["parallel"],
    )
