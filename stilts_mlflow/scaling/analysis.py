"""What the study's scores say: the curve over k with bootstrap CIs, marginal gains, competing fits,
a verdict on diminishing returns, and each task's contribution.

Every observation is one pipeline: (subset, seed, score). Confidence intervals resample those
observations (scipy's bootstrap, percentile intervals, which stay defined for the small groups a
study has); the curve fits use scipy's least squares and are compared by AIC and BIC under Gaussian
errors; the curvature test and the task attribution are ordinary least squares from statsmodels.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import statsmodels.api as sm
from scipy import optimize, stats

CONFIDENCE = 0.95
CONCAVE = ("log", "saturating", "power")
VERDICTS = ("diminishing", "accelerating", "steady", "declining", "inconclusive")


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
    low: float
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
    quadratic: dict[str, float]  # curvature of score ~ k + k²: coefficient and its CI
    slope: dict[str, float]  # score ~ k: slope and its CI
    verdict: str
    evidence: list[str]
    attribution: dict[str, Interval] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["curve"] = {str(k): v for k, v in out["curve"].items()}
        out["gains"] = {str(k): v for k, v in out["gains"].items()}
        return out


# --- curve and marginal gains ---------------------------------------------------------------------
def _interval(statistic, rng: np.random.Generator, n_boot: int, *samples: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic(*samples)`, each sample resampled on its own. A sample that
    cannot vary under resampling (one observation, or all equal: k = 0 and k = 9 with one seed) is held
    fixed, so a gain next to it keeps the other size's spread instead of collapsing to a point."""
    varying = [i for i, d in enumerate(samples) if len(d) >= 2 and np.ptp(d) > 0]
    if not varying:
        point = float(statistic(*samples))
        return point, point

    def resampled(*drawn: np.ndarray) -> float:
        args = list(samples)
        for i, d in zip(varying, drawn):
            args[i] = d
        return statistic(*args)

    res = stats.bootstrap(
        [samples[i] for i in varying],
        resampled,
        n_resamples=n_boot,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=rng,
        vectorized=False,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def by_size(observations: list[Observation]) -> dict[int, np.ndarray]:
    groups: dict[int, list[float]] = defaultdict(list)
    for o in observations:
        groups[o.k].append(o.score)
    return {k: np.asarray(groups[k], dtype=float) for k in sorted(groups)}


def curve(observations: list[Observation], n_boot: int = 2000, seed: int = 0) -> dict[int, Interval]:
    """Mean score per k with a bootstrap CI over that size's subsets and seeds."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, values in by_size(observations).items():
        low, high = _interval(np.mean, rng, n_boot, values)
        out[k] = Interval(float(values.mean()), low, high, len(values))
    return out


def marginal_gains(observations: list[Observation], n_boot: int = 2000, seed: int = 0) -> dict[int, Interval]:
    """Δ(k) = mean score at k minus mean at the previous size run, with a two-sample bootstrap CI."""
    rng = np.random.default_rng(seed)
    groups = by_size(observations)
    sizes = sorted(groups)
    out = {}
    for prev, k in zip(sizes, sizes[1:]):
        a, b = groups[prev], groups[k]
        low, high = _interval(lambda x, y: np.mean(y) - np.mean(x), rng, n_boot, a, b)
        out[k] = Interval(float(b.mean() - a.mean()), low, high, len(a) + len(b))
    return out


# --- competing curve fits ---------------------------------------------------------------------------
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


# --- the verdict --------------------------------------------------------------------------------------
def _ols(x: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    model = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    ci = model.conf_int(alpha=1 - CONFIDENCE)
    return {
        name: {
            "coef": float(model.params[i + 1]),
            "low": float(ci[i + 1][0]),
            "high": float(ci[i + 1][1]),
            "p": float(model.pvalues[i + 1]),
        }
        for i, name in enumerate(names)
    }


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


def verdict(observations: list[Observation], fits: list[Fit]) -> tuple[str, list[str], dict, dict]:
    """diminishing: the curvature of score ~ k + k² is negative with its CI below 0 and a concave model
    fits best by AIC; accelerating: the curvature's CI lies above 0; steady: the slope of score ~ k is
    positive and no curvature shows; declining: the slope is negative; inconclusive: neither slope nor
    curvature is distinguishable from noise."""
    k = np.array([o.k for o in observations], dtype=float)
    y = np.array([o.score for o in observations], dtype=float)
    if len(set(k)) < 3:
        return "inconclusive", ["fewer than three sizes k were run"], {}, {}
    if np.ptp(y) < 1e-9:
        return "inconclusive", [f"every pipeline scored the same ({y[0]:.4f}): nothing to compare"], {}, {}
    quad = _ols(np.column_stack([k, k**2]), y, ["k", "k2"])["k2"]
    slope = _ols(k[:, None], y, ["k"])["k"]
    best = fits[0].name if fits else "none"
    evidence = [
        f"score ~ k + k^2: curvature {quad['coef']:+.5f} (95% CI {quad['low']:+.5f} to {quad['high']:+.5f}, "
        f"p={quad['p']:.3g})",
        f"score ~ k: slope {slope['coef']:+.5f} per task (95% CI {slope['low']:+.5f} to {slope['high']:+.5f}, "
        f"p={slope['p']:.3g})",
        f"{_best_fit_line(fits)}; n={len(y)} pipelines",
    ]
    if quad["high"] < 0 and best in CONCAVE:
        return "diminishing", evidence, quad, slope
    if quad["low"] > 0 and slope["low"] > 0:
        return "accelerating", evidence, quad, slope
    if slope["low"] > 0 and quad["high"] >= 0:
        return "steady", evidence, quad, slope
    if slope["high"] < 0:
        return "declining", evidence, quad, slope
    return "inconclusive", evidence, quad, slope


# --- which tasks help ---------------------------------------------------------------------------------
def attribution(observations: list[Observation]) -> dict[str, Interval]:
    """Each task's effect on the score: the coefficient of its presence in an OLS regression of the
    score on all task indicators, with its 95% CI."""
    tasks = sorted({t for o in observations for t in o.subset})
    if not tasks:
        return {}
    x = np.array([[float(t in o.subset) for t in tasks] for o in observations])
    y = np.array([o.score for o in observations], dtype=float)
    if len(y) <= len(tasks) + 1:
        return {}
    coefs = _ols(x, y, tasks)
    return {t: Interval(c["coef"], c["low"], c["high"], int(x[:, i].sum())) for i, (t, c) in enumerate(coefs.items())}


def analyse(observations: list[Observation], n_boot: int = 2000, seed: int = 0) -> Analysis:
    if not observations:
        raise ValueError("no finished pipelines to analyse")
    fits = fit_models(observations)
    name, evidence, quad, slope = verdict(observations, fits)
    return Analysis(
        curve(observations, n_boot, seed),
        marginal_gains(observations, n_boot, seed),
        fits,
        quad,
        slope,
        name,
        evidence,
        attribution(observations),
    )
