"""The study planner (`stilts scaling --plan`): a design's pipelines, what they cost, what they can detect,
and how both change with more seeds or subsets, before anything trains.

Cost comes from costs.py (measured phase times on CPU presets, a throughput model on GPU presets); what a
design can detect from power.py under a noise model measured on a real study (noise.py). More seeds only
average away the seed noise; more subsets per size also average away the subset-to-subset noise, which
dominates the measured noise, so the table shows both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from stilts_mlflow.presets import Preset
from stilts_mlflow.scaling.costs import PHASES, CostModel
from stilts_mlflow.scaling.design import StudyDesign
from stilts_mlflow.scaling.models import StudyModels, Units
from stilts_mlflow.scaling.noise import NoiseModel
from stilts_mlflow.scaling.power import Detectable, for_design


@dataclass(frozen=True)
class Alternative:
    design: StudyDesign
    pipelines: int
    seconds: float  # wall time (CPU presets) or GPU seconds (GPU presets); nan when costs are unknown
    detectable: Detectable


@dataclass(frozen=True)
class Plan:
    preset: Preset
    design: StudyDesign
    budget: str
    parallel: int
    cost: CostModel
    noise: NoiseModel
    phase_seconds: dict[str, float]  # summed over the study's pipelines
    detectable: Detectable
    alternatives: list[Alternative]

    @property
    def pipelines(self) -> int:
        return len(self.design.runs())


def _study_seconds(design: StudyDesign, cost: CostModel, budget: str) -> dict[str, float]:
    totals = dict.fromkeys(PHASES, 0.0)
    if not cost.known:
        return {p: float("nan") for p in PHASES}
    for subset, _ in design.runs():
        for phase, s in cost.pipeline(subset, budget).seconds.items():
            totals[phase] += s
    return totals


def wall_seconds(design: StudyDesign, cost: CostModel, budget: str, parallel: int) -> float:
    """CPU presets: the study's wall time at `parallel` pipelines at once; GPU presets: its GPU seconds."""
    total = sum(_study_seconds(design, cost, budget).values())
    if cost.on_gpu:
        return total
    return total / parallel + cost.overhead * len(design.runs())


def detectable(design: StudyDesign, noise: NoiseModel) -> Detectable:
    return for_design(StudyModels.build(Units.from_subsets([s for s, _ in design.runs()])), noise)


def make(
    design: StudyDesign, preset: Preset, cost: CostModel, noise: NoiseModel, budget: str = "fixed", parallel: int = 1
) -> Plan:
    seeds = len(design.seeds)
    options = []
    for n_seeds in sorted({seeds, seeds + 1, seeds + 2}):
        for per_size in sorted({design.subsets_per_size, design.subsets_per_size + 1, 2 * design.subsets_per_size}):
            alt = replace(
                design, seeds=tuple(range(n_seeds)) if n_seeds != seeds else design.seeds, subsets_per_size=per_size
            )
            options.append(
                Alternative(alt, len(alt.runs()), wall_seconds(alt, cost, budget, parallel), detectable(alt, noise))
            )
    return Plan(
        preset,
        design,
        budget,
        parallel,
        cost,
        noise,
        _study_seconds(design, cost, budget),
        detectable(design, noise),
        options,
    )


# --- rendering ----------------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _sizes(sizes: tuple[int, ...]) -> str:
    s = sorted(set(sizes))
    return f"{s[0]}-{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else ",".join(map(str, s))


def render(plan: Plan) -> str:
    d, cost = plan.design, plan.cost
    gpu = cost.on_gpu
    runs = d.runs()
    per_k = Counter(len(s) for s, _ in runs)
    subsets_k = Counter(len(s) for s in d.subsets())
    lines = [
        f"Plan: preset {plan.preset.name}, sizes {_sizes(d.sizes)}, {d.subsets_per_size} subsets per middle size, "
        f"seeds {','.join(map(str, d.seeds))}, design seed {d.design_seed}, budget {plan.budget}",
        "",
        f"  {'k':>2}  {'subsets':>7}  {'seeds':>5}  {'pipelines':>9}  {'GPU-h' if gpu else 'min'} per pipeline",
    ]
    for k in sorted(per_k):
        subset = next(s for s in d.subsets() if len(s) == k)
        each = cost.pipeline(subset, plan.budget).total if cost.known else float("nan")
        shown = f"{each / 3600:.2f}" if gpu else f"{each / 60:.1f}"
        lines.append(f"  {k:>2}  {subsets_k[k]:>7}  {len(d.seeds):>5}  {per_k[k]:>9}  {shown}")
    lines += [f"  total {len(runs)} pipelines", "", f"Cost ({cost.source}):"]
    phases = plan.phase_seconds
    if gpu:
        evaluating = sum(cost.pipeline(s, plan.budget).evaluating for s, _ in runs)
        lines += [
            f"  GPU-hours on {cost.gpu}: "
            + ", ".join(f"{p} {phases[p] / 3600:,.1f}" for p in PHASES)
            + f"; per study {sum(phases.values()) / 3600:,.1f}, of which {evaluating / 3600:,.1f} dev "
            "evaluations every eval_every steps",
            f"  Kubernetes Jobs: {len(runs)} (one per pipeline, 1 GPU each); wall time with {plan.parallel} "
            f"at a time: about {_duration(max(sum(phases.values()) / plan.parallel, _longest(plan)))} "
            "(the longest pipeline bounds it from below)",
        ]
    elif cost.known:
        per = ", ".join(f"{p} {cost.per_phase[p]:.1f} s" for p in PHASES)
        lines += [
            f"  per pipeline: {per}; + {cost.overhead:.1f} s registration and export",
            f"  expected wall time: {_duration(wall_seconds(d, cost, plan.budget, plan.parallel))} at "
            f"{plan.parallel} pipelines at a time",
        ]
    else:
        lines += ["  unknown: run a study of this preset once, then plan again"]
    m = plan.detectable
    lines += [
        "",
        f"Minimum detectable at 80% power, 5% level (noise measured on {plan.noise.source}):",
        f"  slope ±{m.slope:.4f} per task; curvature ±{m.curvature:.5f} per task² (the middle {m.bend:.3f} off "
        "the straight line between k's ends)",
        "",
        "More seeds or subsets:",
        f"  {'seeds':>5}  {'subsets/size':>12}  {'pipelines':>9}  {'GPU-h' if gpu else 'wall time':>9}  "
        f"{'slope':>7}  {'curvature':>9}  {'bend':>5}",
    ]
    for a in plan.alternatives:
        time = f"{a.seconds / 3600:,.0f}" if gpu else _duration(a.seconds)
        mark = "  <- this design" if a.design == d else ""
        lines.append(
            f"  {len(a.design.seeds):>5}  {a.design.subsets_per_size:>12}  {a.pipelines:>9}  {time:>9}  "
            f"{a.detectable.slope:>7.4f}  {a.detectable.curvature:>9.5f}  {a.detectable.bend:>5.3f}{mark}"
        )
    if gpu:
        lines += ["", "The noise is the synthetic reference study's: real XLM-R studies may be more or less noisy."]
    return "\n".join(lines)


def _longest(plan: Plan) -> float:
    return max(plan.cost.pipeline(s, plan.budget).total for s, _ in plan.design.runs())
