"""How noisy a study's pipelines are, measured from real ones: the components the simulation plants and the
power calculations assume.

A pipeline's XNLI score (the average over 15 languages) is read as

    curve(k) + the effects of the tasks in its subset + subset noise + seed noise,

each noise a vector over the languages whose average the analysis sees:
- **seed-to-seed** (`seed_sd`): the spread of one subset's score over seeds, from subsets run with several
  seeds (in the study, or in separate replicate runs such as `stilts transfer --seeds 0,1,2` at k = 0). A
  share of it (`seed_shared`, assumed: one study's seeds cannot tell) moves every pipeline of a seed together;
- **subset-to-subset** (`subset_sd`): what is left between subsets of one size once task effects are taken
  out, net of the seed noise; `trend` is the slope of its log-variance in k (reported, and planted only in
  the simulation's robustness check: the measured trend is within noise of zero);
- **task effects** (`task_sd`): the spread of the tasks' own effects, from the joint model's estimates net of
  their sampling variance (method of moments);
- **per language** (`language_cov`): the residual covariance across languages (positive semi-definite, of
  rank at most the residual degrees of freedom), which sets how much of a language's noise the 15-language
  average keeps (`effective_languages`); the simulation draws every component with this shape.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import statsmodels.api as sm

from stilts_mlflow.scaling.models import StudyModels, Units

REFERENCE = "default_tiny_2026-12-07.json"
SEED_SHARED = 0.5


@dataclass(frozen=True)
class NoiseModel:
    seed_sd: float
    subset_sd: float
    task_sd: float
    languages: tuple[str, ...]
    language_means: tuple[float, ...]  # per-language level at the smallest size run
    language_cov: tuple[tuple[float, ...], ...]  # residual covariance across languages (pipeline level)
    slope: float = 0.0  # the measured study's slope per task (line + task effects): sizes the planted effects
    trend: float = 0.0  # d log(subset variance) / dk
    trend_se: float = 0.0
    trend_center: float = 4.5  # the k at which subset_sd applies when the trend is planted
    seed_shared: float = SEED_SHARED
    seed_df: int = 0
    residual_df: int = 0
    source: str = ""

    def __post_init__(self):
        for name in ("seed_sd", "subset_sd", "task_sd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"noise {name} must be a finite number >= 0; got {value}")
        if not 0 <= self.seed_shared <= 1:
            raise ValueError(f"noise seed_shared must lie in 0..1; got {self.seed_shared}")

    @property
    def residual_sd(self) -> float:
        """SD of one pipeline's score around its subset's expectation, shared seed offset aside."""
        return math.sqrt(self.subset_sd**2 + (1 - self.seed_shared) * self.seed_sd**2)

    def unit_variance(self, k: np.ndarray, runs: np.ndarray, trend: bool = False) -> np.ndarray:
        """Variance of a subset's mean score over `runs` seeds (the shared seed offsets left out: they cancel
        between subsets run with the same seeds). `trend`: the subset component grows with k as measured."""
        k = np.asarray(k, dtype=float)
        scale = np.exp(self.trend * (k - self.trend_center)) if trend else 1.0
        return self.subset_sd**2 * scale + (1 - self.seed_shared) * self.seed_sd**2 / np.asarray(runs, float)

    @property
    def language_shape(self) -> np.ndarray:
        """The per-language covariance scaled so that the languages' average has variance 1."""
        cov = np.array(self.language_cov)
        return cov / cov.mean()

    @property
    def effective_languages(self) -> float:
        """How many independent languages the 15-language average is worth: mean variance / variance of mean."""
        cov = np.array(self.language_cov)
        return float(np.trace(cov) / len(cov) / cov.mean())

    def summary(self) -> dict[str, Any]:
        cov = np.array(self.language_cov)
        return {
            "seed_sd": self.seed_sd,
            "seed_df": self.seed_df,
            "seed_shared": self.seed_shared,
            "subset_sd": self.subset_sd,
            "residual_sd": self.residual_sd,
            "residual_df": self.residual_df,
            "task_sd": self.task_sd,
            "slope": self.slope,
            "trend": self.trend,
            "trend_se": self.trend_se,
            "effective_languages": self.effective_languages,
            "language_sd": dict(zip(self.languages, map(float, np.sqrt(np.diag(cov))))),
            "source": self.source,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- reading runs ----------------------------------------------------------------------------------------
def language_scores(runs: Sequence[dict[str, Any]], where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Runs with per-language `xnli_test` scores -> (languages, scores of shape (runs, languages))."""
    if not runs:
        raise ValueError(f"{where}: no runs to measure noise from")
    missing = [i for i, r in enumerate(runs) if not r.get("xnli_test")]
    if missing:
        raise ValueError(
            f"{where}: run {missing[0]} has no per-language 'xnli_test' scores (summary.json files "
            "written before the calibration release lack them)"
        )
    languages = tuple(runs[0]["xnli_test"])
    return languages, np.array([[float(r["xnli_test"][lang]) for lang in languages] for r in runs])


def load(path: str | Path | None = None) -> dict[str, Any]:
    """A study's summary.json, or (None) the shipped reference study: {"runs": [...], "seed_replicates": [...]}."""
    if path is None:
        text = resources.files("stilts_mlflow.scaling").joinpath("reference", REFERENCE).read_text()
        return json.loads(text)
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"noise source {p}: no such file (give a study's summary.json)")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"noise source {p}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"noise source {p}: no 'runs' list (expected a study's summary.json)")
    return data


# --- estimating ----------------------------------------------------------------------------------------
def _seed_variance(runs: Sequence[dict[str, Any]], scores: np.ndarray) -> tuple[float, int]:
    """Pooled within-subset variance of the average over seeds, and its degrees of freedom."""
    units = Units.from_subsets([r["subset"] for r in runs])
    avg = scores.mean(axis=1)
    unit_mean = units.means(avg)[0]
    dev = avg - unit_mean[list(units.run_unit)]
    df = len(runs) - len(units.subsets)
    return (float(dev @ dev / df), df) if df > 0 else (0.0, 0)


def estimate(data: dict[str, Any], seed_shared: float = SEED_SHARED, where: str = "noise source") -> NoiseModel:
    """Noise components from a study's runs (and separate seed replicates, if any); see the module doc."""
    runs = data["runs"]
    languages, scores = language_scores(runs, where)
    seed_var, seed_df = _seed_variance(runs, scores)
    if seed_df == 0 and data.get("seed_replicates"):
        rep_languages, rep_scores = language_scores(data["seed_replicates"], where + " seed_replicates")
        seed_var, seed_df = _seed_variance(
            data["seed_replicates"], rep_scores[:, [rep_languages.index(lang) for lang in languages]]
        )
    units = Units.from_subsets([r["subset"] for r in runs])
    models = StudyModels.build(units)
    cells = models.cells
    if cells.df < 1:
        raise ValueError(
            f"{where}: {len(units.subsets)} subsets leave no residual degrees of freedom to measure noise from"
        )
    unit_lang = units.means(scores.T)  # (languages, units)
    fit = cells.fit(unit_lang.mean(axis=0))
    resid_var = float(fit.s2[0])
    runs_per_unit = np.array(units.runs_per_unit, dtype=float)
    subset_var = max(0.0, resid_var - (1 - seed_shared) * seed_var * float(np.mean(1 / runs_per_unit)))

    task_var = 0.0
    if models.tasks:  # task effects from the cell-means model only (the line's would carry its lack of fit)
        effects = cells.estimate(fit, models.task_contrasts(cells))
        est, se = effects.est[0], effects.se[0]
        task_var = max(0.0, float((est @ est - se @ se) / (len(est) - 1)))

    lang_fit = cells.fit(unit_lang)
    resid = lang_fit.resid.T  # (units, languages)
    cov = resid.T @ resid / cells.df  # its mean over all language pairs is resid_var: the average's variance

    h = np.einsum("ij,jk,ik->i", cells.X, cells.xtx_inv, cells.X)
    ok = h < 0.99
    trend, trend_se = 0.0, 0.0
    if ok.sum() >= 4 and len(set(units.k[ok])) >= 2:
        r = fit.resid[0][ok]
        g = sm.OLS(np.log(r**2 / (1 - h[ok]) + 1e-12), sm.add_constant(units.k[ok])).fit()
        trend, trend_se = float(g.params[1]), float(g.bse[1])

    slope = 0.0
    if models.line is not None:
        slope = float(
            models.line.estimate(models.line.fit(unit_lang.mean(axis=0)), models.coefficient(models.line, "k")).est[
                0, 0
            ]
        )
    smallest = units.k == units.k.min()
    return NoiseModel(
        seed_sd=math.sqrt(seed_var),
        subset_sd=math.sqrt(subset_var),
        task_sd=math.sqrt(task_var),
        languages=languages,
        language_means=tuple(map(float, unit_lang[:, smallest].mean(axis=1))),
        language_cov=tuple(map(tuple, cov.tolist())),
        slope=slope,
        trend=trend,
        trend_se=trend_se,
        trend_center=float(units.k.mean()),
        seed_shared=seed_shared,
        seed_df=seed_df,
        residual_df=cells.df,
        source=data.get("label", where),
    )


def reference() -> NoiseModel:
    """The noise measured on the shipped reference study (the default tiny design on a fresh clone)."""
    return estimate(load(None), where="reference study")
