"""What a design can detect: the smallest slope and curvature its tests find with 80% power at the 5% level.

For a coefficient estimated with standard error `se` on `df` residual degrees of freedom, the two-sided t
test's power at a true value d is that of a noncentral t with noncentrality d / se (scipy's `nct`); the
minimum detectable effect is the d where that power reaches the target. A design's standard errors come
from its models and a noise model (no data: the planner), a study's from its own fit (the report).
A curvature c in k² bends the curve by c·(range/2)² at the middle of the range: the middle sits that far
from the straight line between the ends, which is the `bend` the report also gives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

from stilts_mlflow.scaling.models import StudyModels
from stilts_mlflow.scaling.noise import NoiseModel

ALPHA = 0.05
POWER = 0.8


def power_at(effect: float, se: float, df: int, alpha: float = ALPHA) -> float:
    """Probability that the two-sided t test at `alpha` rejects when the true coefficient is `effect`."""
    if not (se > 0 and df > 0):
        return float("nan")
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    upper = stats.nct.sf(crit, df, nc)
    return float(min(1.0, (1.0 if np.isnan(upper) else upper) + np.nan_to_num(stats.nct.cdf(-crit, df, nc))))


def detectable(se: float, df: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest |coefficient| the two-sided t test at `alpha` finds with probability `power`."""
    if not (se > 0 and df > 0 and np.isfinite(se)):
        return float("nan")
    high = se
    while power_at(high, se, df, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: power_at(d, se, df, alpha) - power, 0.0, high, xtol=se * 1e-6))


@dataclass(frozen=True)
class Detectable:
    """Minimum detectable slope (per task) and curvature (per task²), with what they rest on."""

    slope: float
    curvature: float
    bend: float  # curvature x (range / 2)²: how far the middle of a curve of that curvature sits off its chord
    se_slope: float
    se_curvature: float
    df_line: int
    df_quadratic: int
    alpha: float = ALPHA
    power: float = POWER

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def half_range_squared(models: StudyModels) -> float:
    return ((max(models.sizes) - min(models.sizes)) / 2) ** 2


def from_standard_errors(
    models: StudyModels, se_slope: float, se_curvature: float, alpha: float = ALPHA, power: float = POWER
) -> Detectable:
    df_line = models.line.df if models.line else 0
    df_quad = models.quadratic.df if models.quadratic else 0
    curvature = detectable(se_curvature, df_quad, alpha, power)
    return Detectable(
        detectable(se_slope, df_line, alpha, power),
        curvature,
        curvature * half_range_squared(models),
        se_slope,
        se_curvature,
        df_line,
        df_quad,
        alpha,
        power,
    )


def for_design(models: StudyModels, noise: NoiseModel, alpha: float = ALPHA, power: float = POWER) -> Detectable:
    """Minimum detectable effects of a design, before any pipeline runs, under `noise`."""
    variances = noise.unit_variance(models.units.k, np.array(models.units.runs_per_unit))
    se_slope = (
        float(models.line.sandwich_se(models.coefficient(models.line, "k"), variances)[0])
        if models.line
        else float("nan")
    )
    se_curv = (
        float(models.quadratic.sandwich_se(models.coefficient(models.quadratic, "k2"), variances)[0])
        if models.quadratic
        else float("nan")
    )
    return from_standard_errors(models, se_slope, se_curv, alpha, power)
