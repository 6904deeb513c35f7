"""Known-answer validation: synthetic studies drawn from planted truths, put through the study's own analysis.

Each simulated study has the real design (the same subsets, sizes and seeds) and per-language scores

    language level + curve(k) + task effects (drawn per study, summing to zero)
    + subset noise + seed noise (a share of it shared by every pipeline of a seed),

with every noise component drawn with the measured cross-language covariance and the sizes a NoiseModel
gives (noise.py: measured on a real study). The analysis sees each pipeline's 15-language average, exactly
as in a study. Tabulated: the confusion matrix of planted truth x verdict, the verdicts' false-positive rates
under the flat truth, power (the share of studies given the planted verdict), and the coverage of the 95%
intervals: curve points and Δ(k) for every truth; slope where the truth is a line, curvature where it is a
polynomial of degree two at most (elsewhere neither has a model-free true value); task effects (each task
against the average task) everywhere.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from stilts_mlflow.scaling.analysis import Interval, Observation, Outcomes, assess
from stilts_mlflow.scaling.design import StudyDesign
from stilts_mlflow.scaling.models import StudyModels, Units
from stilts_mlflow.scaling.noise import NoiseModel, estimate, reference
from stilts_mlflow.scaling.power import Detectable, for_design

log = logging.getLogger(__name__)
VERDICTS = ("diminishing", "steady", "accelerating", "declining", "inconclusive")
KINDS = ("curve", "gains", "slope", "curvature", "attribution")
BASE = 0.505  # the default study's k = 0 score: the planted curves start here


@dataclass(frozen=True)
class Truth:
    name: str
    expect: str  # the verdict a perfect analysis would give
    curve: tuple[float, ...]  # expected score at k = 0 .. number of tasks
    degree: int | None  # 0, 1, 2 where the curve is exactly such a polynomial in k, else None
    note: str

    def slope(self) -> float | None:
        return self.curve[1] - self.curve[0] if self.degree is not None and self.degree <= 1 else None

    def curvature(self) -> float | None:
        if self.degree is None or self.degree > 2:
            return None
        return (self.curve[2] - 2 * self.curve[1] + self.curve[0]) / 2


Analyser = Callable[[Sequence[tuple[tuple[str, ...], int]], np.ndarray], Outcomes]


# --- truths ----------------------------------------------------------------------------------------------
def _scaled_to_curvature(shape: np.ndarray, models: StudyModels, curvature: float) -> np.ndarray:
    """`shape` scaled so that its least-squares quadratic over the design's units has this curvature."""
    k = models.units.k.astype(int)
    x = np.column_stack([np.ones(len(k)), k, k**2])
    c = np.linalg.lstsq(x, shape[k], rcond=None)[0][2]
    return shape * (curvature / c)


def standard_truths(models: StudyModels, detectable: Detectable, rise: float, n_tasks: int) -> list[Truth]:
    """The planted truths: flat, steady, declining, three diminishing shapes and an accelerating one whose
    scores rise by `rise` over the range (the size of the real study's rise); and three at the design's
    minimum detectable curvature (a concave parabola flattening out at the largest k, a saturating curve,
    a convex parabola): the effects the design is meant to find with 80% power."""
    k = np.arange(n_tasks + 1, dtype=float)
    top = float(n_tasks)
    c = detectable.curvature

    def t(name, expect, values, degree, note):
        return Truth(name, expect, tuple(float(v) for v in BASE + values), degree, note)

    saturating = 1 - np.exp(-k / 2)
    return [
        t("flat", "inconclusive", 0 * k, 0, "no effect of k"),
        t("steady", "steady", rise * k / top, 1, f"linear, +{rise:.3f} over the range"),
        t("declining", "declining", -rise * k / top, 1, f"linear, -{rise:.3f} over the range"),
        t(
            "diminishing-saturating",
            "diminishing",
            rise * saturating / saturating[-1],
            None,
            f"1 - exp(-k/2), +{rise:.3f} over the range",
        ),
        t(
            "diminishing-log",
            "diminishing",
            rise * np.log1p(k) / np.log1p(top),
            None,
            f"log(1+k), +{rise:.3f} over the range",
        ),
        t("diminishing-sqrt", "diminishing", rise * np.sqrt(k / top), None, f"sqrt(k), +{rise:.3f} over the range"),
        t("accelerating", "accelerating", rise * (k / top) ** 2, 2, f"k², +{rise:.3f} over the range"),
        t(
            "diminishing-parabola@mde",
            "diminishing",
            c * (2 * top * k - k**2),
            2,
            f"concave parabola, curvature -{c:.5f} (the minimum detectable), flat at k = {n_tasks}",
        ),
        t(
            "diminishing-saturating@mde",
            "diminishing",
            _scaled_to_curvature(1 - np.exp(-k / 3), models, -c),
            None,
            f"1 - exp(-k/3) with fitted curvature -{c:.5f} (the minimum detectable)",
        ),
        t("accelerating@mde", "accelerating", c * k**2, 2, f"convex parabola, curvature +{c:.5f}"),
    ]


# --- drawing studies -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draws:
    scores: np.ndarray  # (batch, runs): each pipeline's 15-language average
    languages: np.ndarray  # (batch, runs, languages)
    task_effects: np.ndarray  # (batch, tasks), in the design's task order, summing to zero
    seed_offset: np.ndarray  # (batch,): the mean shared seed offset over the study's seeds


def _psd_root(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.clip(w, 0, None))


def draw(
    truth: Truth,
    runs: Sequence[tuple[tuple[str, ...], int]],
    tasks: Sequence[str],
    noise: NoiseModel,
    n: int,
    rng: np.random.Generator,
    trend: bool = False,
    tails: float | None = None,
) -> Draws:
    """`n` studies of `runs` under `truth`. `trend`: the subset noise grows with k as measured; `tails`: noise
    vectors from a multivariate t with this many degrees of freedom (same covariance) instead of a normal."""
    units = Units.from_subsets([s for s, _ in runs])
    seeds = sorted({seed for _, seed in runs})
    run_unit = np.array(units.run_unit)
    run_seed = np.array([seeds.index(seed) for _, seed in runs])
    run_k = np.array([len(s) for s, _ in runs])
    root = _psd_root(noise.language_shape)  # (L, L): z @ root.T has the languages' shape, average variance 1
    n_lang = len(root)

    def vectors(*shape: int) -> np.ndarray:
        z = rng.standard_normal((*shape, n_lang)) @ root.T
        if tails:
            z *= np.sqrt((tails - 2) / rng.chisquare(tails, size=(*shape, 1)))
        return z

    subset_sd = noise.subset_sd * np.exp((noise.trend if trend else 0.0) * (units.k - noise.trend_center) / 2)
    subset = vectors(n, len(units.subsets)) * subset_sd[None, :, None]
    shared = vectors(n, len(seeds)) * noise.seed_sd * np.sqrt(noise.seed_shared)
    own = vectors(n, len(runs)) * noise.seed_sd * np.sqrt(1 - noise.seed_shared)

    g = rng.standard_normal((n, len(tasks))) * noise.task_sd
    effects = g - g.mean(axis=1, keepdims=True)
    member = np.array([[float(t in s) for t in tasks] for s, _ in runs])  # (runs, tasks)
    level = np.array(noise.language_means) - np.mean(noise.language_means)
    mean = np.array(truth.curve)[run_k][None, :, None] + (effects @ member.T)[:, :, None] + level[None, None, :]
    languages = mean + subset[:, run_unit] + shared[:, run_seed] + own
    seed_offset = shared.mean(axis=(1, 2))  # every seed drawn is a seed the study ran
    return Draws(languages.mean(axis=2), languages, effects, seed_offset)


# --- per-study adapter (any analyse(observations) -> Analysis) ----------------------------------------------
def per_study(analyse: Callable[[list], Any]) -> Analyser:
    """An Analyser that calls `analyse(observations)` once per study and reads its Analysis: for checking the
    batched path against the per-study one, and for validating analyses that have no batched path."""

    def run(runs, scores):
        results = [
            analyse([Observation(tuple(s), seed, float(v)) for (s, seed), v in zip(runs, row)])
            for row in np.atleast_2d(scores)
        ]
        sizes = sorted({len(s) for s, _ in runs})
        tasks = sorted({t for s, _ in runs for t in s})

        def intervals(name: str, keys: list) -> tuple[np.ndarray, np.ndarray]:
            nan = Interval(np.nan, np.nan, np.nan, 0)
            values = np.array(
                [[(i.low, i.high) for i in (getattr(r, name).get(key, nan) for key in keys)] for r in results]
            ).reshape(len(results), len(keys), 2)
            return values[..., 0], values[..., 1]

        def coefficient(name: str) -> tuple[np.ndarray, np.ndarray]:
            values = np.array(
                [(d["low"], d["high"]) if d else (np.nan, np.nan) for d in (getattr(r, name) for r in results)]
            )
            return values[:, 0], values[:, 1]

        return Outcomes(
            np.array([r.verdict for r in results]),
            intervals("curve", sizes),
            intervals("gains", sizes[1:]),
            coefficient("slope"),
            coefficient("quadratic"),
            intervals("attribution", tasks),
        )

    return run


def default_analyser() -> Analyser:
    """The study's analysis, batched: the same `assess` that `analysis.analyse` runs on one study."""

    return lambda runs, scores: assess(runs, scores).outcomes()


# --- tabulating ----------------------------------------------------------------------------------------------
@dataclass
class Tally:
    covered: int = 0
    total: int = 0

    def add(self, low: np.ndarray, high: np.ndarray, truth: np.ndarray) -> None:
        low, high = np.broadcast_arrays(low, high)
        truth = np.broadcast_to(truth, low.shape)
        self.covered += int(np.sum((low <= truth) & (truth <= high)))  # nan (no interval) counts as a miss
        self.total += low.size

    @property
    def rate(self) -> float:
        return self.covered / self.total if self.total else float("nan")


@dataclass
class Calibration:
    design: dict[str, Any]
    noise: dict[str, Any]
    detectable: dict[str, float]
    studies: int  # per truth
    seed: int
    variant: str
    truths: list[Truth]
    confusion: dict[str, dict[str, int]]
    coverage: dict[str, dict[str, Tally]]  # kind -> truth -> tally
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def coverage_rate(self, kind: str) -> float:
        tallies = self.coverage[kind].values()
        total = sum(t.total for t in tallies)
        return sum(t.covered for t in tallies) / total if total else float("nan")

    def false_positive(self) -> dict[str, float]:
        flat = self.confusion["flat"]
        return {v: flat.get(v, 0) / self.studies for v in VERDICTS if v != "inconclusive"}

    def power(self) -> dict[str, float]:
        return {t.name: self.confusion[t.name].get(t.expect, 0) / self.studies for t in self.truths if t.name != "flat"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "noise": self.noise,
            "detectable": self.detectable,
            "studies_per_truth": self.studies,
            "seed": self.seed,
            "variant": self.variant,
            "seconds": self.seconds,
            "truths": [
                {"name": t.name, "expect": t.expect, "note": t.note, "curve": list(t.curve)} for t in self.truths
            ],
            "confusion": self.confusion,
            "false_positive_under_flat": self.false_positive(),
            "false_positive_any": 1 - self.confusion["flat"].get("inconclusive", 0) / self.studies,
            "power": self.power(),
            "coverage": {
                kind: {"all": self.coverage_rate(kind), **{name: t.rate for name, t in by_truth.items()}}
                for kind, by_truth in self.coverage.items()
            },
            "notes": self.notes,
        }

    def markdown(self) -> str:
        d = self.to_dict()
        lines = [
            f"# Calibration: {self.studies} simulated studies per planted truth ({self.variant})",
            "",
            f"Design: {self.design['pipelines']} pipelines, sizes {self.design['sizes']}, "
            f"{self.design['subsets_per_size']} subsets per middle size, seeds {self.design['seeds']}; "
            f"simulation seed {self.seed}; {self.seconds:.1f} s.",
            "",
            f"Noise measured on: {self.noise['source']}",
            "",
            "Noise: seed SD {seed_sd:.4f} ({seed_df} df), subset SD {subset_sd:.4f}, task-effect SD "
            "{task_sd:.4f}, residual SD {residual_sd:.4f} ({residual_df} df); the 15-language average is worth "
            "{effective_languages:.1f} independent languages; log-variance trend in k {trend:+.3f} ± {trend_se:.3f} "
            "per task.".format(**self.noise),
            "",
            f"Minimum detectable (80% power, 5% level): slope {self.detectable['slope']:.4f} per task, curvature "
            f"{self.detectable['curvature']:.5f} per task² (the middle {self.detectable['bend']:.3f} off the chord).",
            "",
            "## Verdict by planted truth (share of studies)",
            "",
            "| truth | expected | " + " | ".join(VERDICTS) + " |",
            "|---|---|" + "---|" * len(VERDICTS),
        ]
        for t in self.truths:
            row = self.confusion[t.name]
            lines.append(
                f"| {t.name} | {t.expect} | "
                + " | ".join(
                    (
                        f"**{row.get(v, 0) / self.studies:.3f}**"
                        if v == t.expect
                        else f"{row.get(v, 0) / self.studies:.3f}"
                    )
                    for v in VERDICTS
                )
                + " |"
            )
        fp = self.false_positive()
        lines += [
            "",
            "False-positive rate under the flat truth: "
            + ", ".join(f"{v} {r:.3f}" for v, r in fp.items())
            + f"; any verdict {d['false_positive_any']:.3f}.",
            "",
            "## Coverage of the 95% intervals",
            "",
            "| interval | all | " + " | ".join(t.name for t in self.truths) + " |",
            "|---|---|" + "---|" * len(self.truths),
        ]
        for kind in KINDS:
            by_truth = self.coverage[kind]
            lines.append(
                f"| {kind} | {self.coverage_rate(kind):.3f} | "
                + " | ".join(f"{by_truth[t.name].rate:.3f}" if t.name in by_truth else "–" for t in self.truths)
                + " |"
            )
        lines += ["", "## Planted truths", ""] + [f"- **{t.name}** ({t.expect}): {t.note}" for t in self.truths]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def calibrate(
    design: StudyDesign,
    noise: NoiseModel,
    studies: int = 1000,
    seed: int = 0,
    analyser: Analyser | None = None,
    rise: float | None = None,
    trend: bool = False,
    tails: float | None = None,
    batch: int = 1000,
    notes: Sequence[str] = (),
) -> Calibration:
    """Draw `studies` simulated studies per standard truth and tabulate what `analyser` (the study's own
    analysis by default) concluded. `rise`: how far the realistic planted curves rise over the range (default:
    the measured slope times the number of tasks)."""
    start = time.monotonic()
    analyser = analyser or default_analyser()
    runs = design.runs()
    units = Units.from_subsets([s for s, _ in runs])
    models = StudyModels.build(units)
    tasks = units.tasks
    detect = for_design(models, noise)
    rise = abs(noise.slope) * len(design.tasks) if rise is None else rise  # the measured study's rise
    truths = standard_truths(models, detect, rise, len(design.tasks))
    sizes = sorted({len(s) for s, _ in runs})
    rng = np.random.default_rng(seed)
    confusion: dict[str, dict[str, int]] = {}
    coverage: dict[str, dict[str, Tally]] = {kind: {} for kind in KINDS}
    for truth in truths:
        verdicts: Counter[str] = Counter()
        tallies = {kind: Tally() for kind in KINDS}
        curve = np.array(truth.curve)[sizes]
        for done in range(0, studies, batch):
            d = draw(truth, runs, tasks, noise, min(batch, studies - done), rng, trend=trend, tails=tails)
            out = analyser(runs, d.scores)
            verdicts.update(out.verdict.tolist())
            tallies["curve"].add(*out.curve, curve[None, :] + d.seed_offset[:, None])
            tallies["gains"].add(*out.gains, np.diff(curve)[None, :])
            if truth.slope() is not None:
                tallies["slope"].add(*out.slope, np.array(truth.slope()))
            if truth.curvature() is not None:
                tallies["curvature"].add(*out.curvature, np.array(truth.curvature()))
            if out.attribution is not None and out.attribution[0].shape[1] == len(tasks):
                tallies["attribution"].add(*out.attribution, d.task_effects)
        confusion[truth.name] = {v: verdicts.get(v, 0) for v in VERDICTS}
        for kind, tally in tallies.items():
            if tally.total:
                coverage[kind][truth.name] = tally
        log.debug("truth %s: %s", truth.name, dict(verdicts))
    notes = list(notes)
    variant = ("heavy tails (t, %g df)" % tails if tails else "normal noise") + (
        ", variance trend in k" if trend else ""
    )
    return Calibration(
        {
            "pipelines": len(runs),
            "sizes": ",".join(map(str, sizes)),
            "subsets_per_size": design.subsets_per_size,
            "seeds": ",".join(map(str, design.seeds)),
        },
        noise.summary(),
        detect.to_dict(),
        studies,
        seed,
        variant,
        truths,
        confusion,
        coverage,
        time.monotonic() - start,
        notes,
    )


def for_study(
    design: StudyDesign, runs: Sequence[dict[str, Any]], studies: int = 1000, seed: int = 0
) -> Calibration | None:
    """The calibration of a study that ran: its design, the noise measured on its own pipelines (`runs`: rows
    with per-language `xnli_test` scores), or the reference study's where its own cannot be measured.
    None with fewer than three sizes (no curvature to test)."""
    if len(set(design.sizes)) < 3:
        log.info("no calibration: fewer than three sizes")
        return None
    notes = []
    try:
        noise = estimate({"runs": list(runs), "label": f"this study's {len(runs)} pipelines"}, where="this study")
        if noise.residual_sd == 0:
            raise ValueError("this study: the pipelines' scores do not vary around the model")
        if noise.seed_df == 0:
            notes.append("one seed per subset: the seed noise is not separated from the subset noise")
    except ValueError as exc:
        noise = reference()
        notes.append(f"noise from the reference study ({exc})")
    return calibrate(design, noise, studies, seed, notes=notes)
