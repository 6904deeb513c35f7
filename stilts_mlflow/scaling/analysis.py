"""What the study's scores say: the curve over k, marginal gains, competing fits, a verdict on diminishing
returns, each task's contribution, and what the design could have detected.

The unit is the task subset (its score the mean over the seeds that ran it), and every estimate comes from
one joint least-squares model of the subsets' scores with each task's effect in it (models.py): the curve
and Δ(k) from one mean per size, the slope from a line in k, the curvature from a quadratic. Intervals are
t intervals on the pooled residual variance, so a size run once (k = 0, k = 9) gets an honest interval too.

The verdict is a closed test at 5%: unless the slope's t test rejects 0 (the curve has a trend), the answer
is inconclusive; then a curvature whose t test rejects 0 makes it diminishing (concave, rising at the
smallest k) or accelerating (convex, rising at the largest k), else the slope's sign makes it steady or
declining. Under a flat truth at most 5% of studies get any verdict but inconclusive, and a straight line is
called curved at most 5% of the time. (An F test of slope and curvature together as the first step, tried
first, cost the steady truth 8 points of power in the simulation.) The simulation (simulate.py) checks both, and the
intervals' coverage, on studies drawn with the measured noise. The AIC/BIC fits describe the shape; they no
longer vote. Every function here runs one study or a batch of thousands (`assess`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import optimize

from stilts_mlflow.scaling.linear import Estimates
from stilts_mlflow.scaling.models import StudyModels, Units
from stilts_mlflow.scaling.power import Detectable, from_standard_errors

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
CONCAVE = ("log", "saturating", "power")
VERDICTS = ("diminishing", "accelerating", "steady", "declining", "inconclusive")


@dataclass
class Outcomes:
    """What the analysis said about a batch of studies: verdicts and 95% intervals as (low, high) arrays."""

    verdict: np.ndarray  # (batch,) str
    curve: tuple[np.ndarray, np.ndarray]  # (batch, sizes)
    gains: tuple[np.ndarray, np.ndarray]  # (batch, sizes - 1)
    slope: tuple[np.ndarray, np.ndarray]  # (batch,)
    curvature: tuple[np.ndarray, np.ndarray]  # (batch,)
    attribution: tuple[np.ndarray, np.ndarray] | None  # (batch, tasks), None where the analysis gives none


@dataclass(frozen=True)
class Observation:
    subset: tuple[str, ...]
    seed: int
    score: float

    @property
    def k(self) -> int:
        return len(self.subset)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # nan where the design leaves no residual degrees of freedom
    high: float
    n: int


@dataclass(frozen=True)
class Fit:
    name: str
    params: dict[str, float]
    rss: float
    aic: float
    bic: float


@dataclass
class Analysis:
    curve: dict[int, Interval]
    gains: dict[int, Interval]  # Δ(k) = mean(k) - mean(previous size), for each size after the first
    fits: list[Fit]  # best AIC first
    quadratic: dict[str, float]  # curvature of score ~ k + k² + tasks: coef, low, high, p, se
    slope: dict[str, float]  # score ~ k + tasks: coef, low, high, p, se
    verdict: str
    evidence: list[str]
    attribution: dict[str, Interval] = field(default_factory=dict)
    power: dict[str, Any] = field(default_factory=dict)  # minimum detectable effects and what they rest on

    def to_dict(self) -> dict[str, Any]:
        out = _json_safe(asdict(self))
        out["curve"] = {str(k): v for k, v in out["curve"].items()}
        out["gains"] = {str(k): v for k, v in out["gains"].items()}
        return out


def _json_safe(value: Any) -> Any:
    """nan and inf (an interval the design cannot give) become None, which JSON has."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the batched core -----------------------------------------------------------------------------------------
@dataclass
class Assessment:
    """Every estimate and the verdict for a batch of studies of one design (arrays lead with the batch)."""

    models: StudyModels
    curve: Estimates  # (batch, sizes)
    gains: Estimates  # (batch, sizes - 1)
    slope: Estimates | None  # (batch, 1)
    curvature: Estimates | None  # (batch, 1)
    initial: np.ndarray | None  # (batch,) the quadratic's slope at the smallest k
    final: np.ndarray | None  # (batch,) ... and at the largest
    attribution: Estimates | None  # (batch, tasks)
    spread: np.ndarray  # (batch,) max - min of the pipelines' scores
    verdict: np.ndarray = field(init=False)

    def __post_init__(self):
        self.verdict = _verdicts(self)

    def outcomes(self):
        """The intervals and verdicts the simulation scores (Outcomes)."""
        nan = np.full(len(self.spread), np.nan)

        def first(e: Estimates | None) -> tuple[np.ndarray, np.ndarray]:
            return (nan, nan) if e is None else tuple(x[:, 0] for x in e.interval(CONFIDENCE))

        return Outcomes(
            self.verdict,
            self.curve.interval(CONFIDENCE),
            self.gains.interval(CONFIDENCE),
            first(self.slope),
            first(self.curvature),
            self.attribution.interval(CONFIDENCE) if self.attribution is not None else None,
        )


def _verdicts(a: Assessment) -> np.ndarray:
    out = np.full(len(a.spread), "inconclusive", dtype=object)
    if a.curvature is None or a.slope is None:
        return out
    curv, curv_p = a.curvature.est[:, 0], np.nan_to_num(a.curvature.p[:, 0], nan=1.0)
    slope, slope_p = a.slope.est[:, 0], np.nan_to_num(a.slope.p[:, 0], nan=1.0)
    trend = slope_p < ALPHA
    bent = trend & (curv_p < ALPHA)
    straight = trend & ~bent
    out[bent & (curv < 0)] = np.where(a.initial[bent & (curv < 0)] > 0, "diminishing", "declining")
    out[bent & (curv > 0)] = np.where(a.final[bent & (curv > 0)] > 0, "accelerating", "declining")
    out[straight] = np.where(slope[straight] > 0, "steady", "declining")
    out[a.spread < 1e-9] = "inconclusive"
    return out


def assess(runs: Sequence[tuple[Sequence[str], int]], scores: np.ndarray) -> Assessment:
    """The analysis of `scores` (batch, runs) for pipelines `runs` = (subset, seed) pairs, in run order."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    units = Units.from_subsets([s for s, _ in runs])
    models = StudyModels.build(units)
    y = units.means(scores)
    cells = models.cells.fit(y)
    attribution = None
    if models.attribution is not None:
        attribution = models.attribution.estimate(models.attribution.fit(y), models.task_contrasts(models.attribution))
    slope = curvature = initial = final = None
    if models.line is not None:
        slope = models.line.estimate(models.line.fit(y), models.coefficient(models.line, "k"))
    if models.quadratic is not None:
        q = models.quadratic
        fit = q.fit(y)
        curvature = q.estimate(fit, models.coefficient(q, "k2"))
        ends = q.estimate(fit, np.array([models.slope_at(min(models.sizes)), models.slope_at(max(models.sizes))]))
        initial, final = ends.est[:, 0], ends.est[:, 1]
    return Assessment(
        models,
        models.cells.estimate(cells, models.curve_contrasts()),
        models.cells.estimate(cells, models.gain_contrasts()),
        slope,
        curvature,
        initial,
        final,
        attribution,
        np.ptp(scores, axis=1),
    )


# --- competing curve fits (descriptive) -----------------------------------------------------------------------
MODELS = {
    "linear": (lambda k, a, b: a + b * k, (0.0, 0.0)),
    "log": (lambda k, a, b: a + b * np.log1p(k), (0.0, 0.0)),
    "saturating": (lambda k, a, c, tau: a + c * (1 - np.exp(-k / tau)), (0.0, 0.0, 1.0)),
    "power": (lambda k, a, b, p: a + b * np.power(k, p), (0.0, 0.0, 0.5)),
}
_BOUNDS = {
    "saturating": ([-np.inf, -np.inf, 0.05], [np.inf, np.inf, 100.0]),
    "power": ([-np.inf, -np.inf, 0.05], [np.inf, np.inf, 3.0]),
}


def fit_models(observations: list[Observation]) -> list[Fit]:
    """Least-squares fits of each model to every observation, best AIC first."""
    k = np.array([o.k for o in observations], dtype=float)
    y = np.array([o.score for o in observations], dtype=float)
    n = len(y)
    fits = []
    for name, (f, p0) in MODELS.items():
        if n <= len(p0):  # as many parameters as observations: nothing left to judge the fit by
            continue
        start = (float(y.mean()),) + p0[1:]
        try:
            with warnings.catch_warnings():  # a flat curve leaves the covariance undefined; the fit itself is fine
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, _ = optimize.curve_fit(
                    f, k, y, p0=start, bounds=_BOUNDS.get(name, (-np.inf, np.inf)), maxfev=20000
                )
        except (RuntimeError, ValueError):
            continue
        rss = float(np.sum((y - f(k, *params)) ** 2))
        dof = len(params) + 1  # + the error variance
        loglik_term = n * math.log(max(rss, 1e-300) / n)
        names = f.__code__.co_varnames[1 : len(params) + 1]
        fits.append(
            Fit(name, dict(zip(names, map(float, params))), rss, loglik_term + 2 * dof, loglik_term + dof * math.log(n))
        )
    return sorted(fits, key=lambda fit: fit.aic)


def _best_fit_line(fits: list[Fit]) -> str:
    """The best fit and its AIC margin: over the linear fit when a curve wins, over the runner-up when
    the linear fit does."""
    if not fits:
        return "best fit by AIC: none (too few pipelines to fit)"
    best = fits[0]
    linear = next((f for f in fits if f.name == "linear"), None)
    rival = linear if linear is not None and linear is not best else (fits[1] if len(fits) > 1 else None)
    if rival is None:
        return f"best fit by AIC: {best.name} (the only model fitted)"
    return f"best fit by AIC: {best.name} ({rival.aic - best.aic:.1f} AIC below {rival.name})"


# --- one study -----------------------------------------------------------------------------------------------
def _runs(observations: list[Observation]) -> tuple[list[tuple[tuple[str, ...], int]], np.ndarray]:
    return [(o.subset, o.seed) for o in observations], np.array([o.score for o in observations], dtype=float)


def _coefficient(e: Estimates) -> dict[str, float]:
    low, high = e.interval(CONFIDENCE)
    return {
        "coef": float(e.est[0, 0]),
        "low": float(low[0, 0]),
        "high": float(high[0, 0]),
        "p": float(e.p[0, 0]),
        "se": float(e.se[0, 0]),
    }


def _intervals(e: Estimates, keys: list, counts: list[int]) -> dict:
    low, high = e.interval(CONFIDENCE)
    return {
        key: Interval(float(e.est[0, i]), float(low[0, i]), float(high[0, i]), n)
        for i, (key, n) in enumerate(zip(keys, counts))
    }


def curve(observations: list[Observation]) -> dict[int, Interval]:
    """Mean score per k (task effects balanced) with its 95% interval."""
    return _curve(assess(*_runs(observations)), observations)


def _curve(a: Assessment, observations: list[Observation]) -> dict[int, Interval]:
    sizes = list(a.models.sizes)
    return _intervals(a.curve, sizes, [sum(o.k == k for o in observations) for k in sizes])


def marginal_gains(observations: list[Observation]) -> dict[int, Interval]:
    """Δ(k) = mean score at k minus mean at the previous size run, with its 95% interval."""
    return _gains(assess(*_runs(observations)), observations)


def _gains(a: Assessment, observations: list[Observation]) -> dict[int, Interval]:
    sizes = list(a.models.sizes)
    return _intervals(
        a.gains, sizes[1:], [sum(o.k in (prev, k) for o in observations) for prev, k in zip(sizes, sizes[1:])]
    )


def attribution(observations: list[Observation]) -> dict[str, Interval]:
    """Each task's effect: what including it adds compared with including an average task of the same size
    (joint model, 95% interval); empty when the design has too few subsets to estimate task effects."""
    return _attribution(assess(*_runs(observations)), observations)


def _attribution(a: Assessment, observations: list[Observation]) -> dict[str, Interval]:
    if a.attribution is None:
        return {}
    tasks = list(a.models.units.tasks)
    return _intervals(a.attribution, tasks, [sum(t in o.subset for o in observations) for t in tasks])


def power_statement(verdict: str, d: Detectable) -> str:
    """What the design could have detected, and whether the verdict's null part is only a lack of power."""
    curv = f"a curvature of ±{d.curvature:.5f} per task² (the middle {d.bend:.3f} off the straight line)"
    slope = f"a slope of ±{d.slope:.4f} per task"
    if verdict == "inconclusive":
        return (
            f"only a lack of power, possibly: this design finds {slope} or {curv} with 80% power at the 5% "
            "level, and smaller effects mostly go unseen"
        )
    if verdict in ("steady", "declining") and not math.isnan(d.curvature):
        return (
            f"no curvature found, which may be a lack of power: this design finds {curv} with 80% power; "
            "diminishing returns that bend less look " + verdict
        )
    return f"this design finds {curv} and {slope} with 80% power at the 5% level"


def analyse(observations: list[Observation]) -> Analysis:
    if not observations:
        raise ValueError("no finished pipelines to analyse")
    a = assess(*_runs(observations))
    fits = fit_models(observations)
    sizes = a.models.sizes
    slope = _coefficient(a.slope) if a.slope is not None else {}
    quad = _coefficient(a.curvature) if a.curvature is not None else {}
    verdict = str(a.verdict[0])
    detect = from_standard_errors(a.models, slope.get("se", float("nan")), quad.get("se", float("nan")))
    power = {**detect.to_dict(), "statement": power_statement(verdict, detect)}
    y = np.array([o.score for o in observations])
    if len(sizes) < 3:
        evidence = ["fewer than three sizes k were run"]
    elif np.ptp(y) < 1e-9:
        evidence = [f"every pipeline scored the same ({y[0]:.4f}): nothing to compare"]
    elif not quad:
        evidence = [f"{len(a.models.units.subsets)} subsets over {len(sizes)} sizes: too few to fit a curvature"]
    else:
        tasks = "task effects" if a.models.tasks else "no task effects (too few subsets to estimate them)"
        evidence = [
            f"score ~ k + k^2 + {tasks}: curvature {quad['coef']:+.5f} (95% CI {quad['low']:+.5f} to "
            f"{quad['high']:+.5f}, p={quad['p']:.3g})",
            f"score ~ k + {tasks}: slope {slope['coef']:+.5f} per task (95% CI {slope['low']:+.5f} to "
            f"{slope['high']:+.5f}, p={slope['p']:.3g})",
            f"{_best_fit_line(fits)}; n={len(y)} pipelines in {len(a.models.units.subsets)} subsets",
            f"closed test at {ALPHA:.2f}: the curvature counts only once the slope differs from 0",
        ]
    return Analysis(
        _curve(a, observations),
        _gains(a, observations),
        fits,
        quad,
        slope,
        verdict,
        evidence,
        _attribution(a, observations),
        power,
    )
