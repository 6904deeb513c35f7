"""The study design's balance and the analysis on curves whose shape is known."""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from stilts_mlflow.scaling.analysis import Observation, analyse, attribution, curve, marginal_gains
from stilts_mlflow.scaling.design import StudyDesign, subsets_of_size
from stilts_mlflow.tasks import INTERMEDIATE_TASKS


# --- design -----------------------------------------------------------------------------------------
def test_design_runs_small_sizes_in_full_and_balances_the_rest():
    design = StudyDesign(subsets_per_size=3, seeds=(0, 1))
    subsets = design.subsets()
    sizes = Counter(len(s) for s in subsets)
    n = len(INTERMEDIATE_TASKS)
    assert sizes[0] == 1 and sizes[1] == n and sizes[n - 1] == n and sizes[n] == 1
    assert all(sizes[k] == 3 for k in range(2, n - 1))
    assert len(set(subsets)) == len(subsets)
    for k in range(2, n - 1):
        counts = Counter(t for s in subsets if len(s) == k for t in s)
        per_task = [counts[t] for t in INTERMEDIATE_TASKS]
        assert max(per_task) - min(per_task) <= 1, (k, per_task)
    assert len(design.runs()) == 2 * len(subsets)
    assert len(subsets) >= 25


def test_default_study_has_every_size_and_at_least_25_pipelines_wherever_it_is_started():
    """`mlflow run . -e scaling`, `stilts scaling` and StudyDesign() run the same default design."""
    import yaml

    from stilts_mlflow.cli import scaling

    project = yaml.safe_load((Path(__file__).parents[1] / "MLproject").read_text())
    mlproject_default = int(project["entry_points"]["scaling"]["parameters"]["subsets_per_size"]["default"])
    cli_default = next(p.default for p in scaling.params if p.name == "subsets_per_size")
    assert mlproject_default == cli_default == StudyDesign().subsets_per_size
    runs = StudyDesign().runs()
    assert len(runs) >= 25
    assert {len(subset) for subset, _ in runs} == set(range(len(INTERMEDIATE_TASKS) + 1))


def test_design_is_deterministic_and_balanced_for_larger_samples():
    tasks = INTERMEDIATE_TASKS
    for k in (2, 3, 4, 5):
        a = subsets_of_size(tasks, k, 9, seed=1)
        assert a == subsets_of_size(tasks, k, 9, seed=1)
        assert len(a) == len(set(a)) == min(9, math.comb(len(tasks), k))
        counts = Counter(t for s in a for t in s)
        assert max(counts.values()) - min(counts[t] for t in tasks) <= 1


@pytest.mark.parametrize("bad", [dict(sizes=(10,)), dict(subsets_per_size=0), dict(seeds=()), dict(seeds=(-1,))])
def test_design_rejects_bad_parameters(bad):
    with pytest.raises(ValueError):
        StudyDesign(**bad)


# --- analysis on known curves -------------------------------------------------------------------------
def _study(shape, noise=0.004, seed=0, per_size=3, seeds=(0, 1)):
    rng = np.random.default_rng(seed)
    obs = []
    for subset, s in StudyDesign(subsets_per_size=per_size, seeds=seeds).runs():
        obs.append(Observation(subset, s, float(shape(len(subset)) + rng.normal(0, noise))))
    return obs


def test_saturating_curve_is_called_diminishing():
    result = analyse(_study(lambda k: 0.40 + 0.20 * (1 - np.exp(-k / 1.5))))
    assert result.verdict == "diminishing", result.evidence
    assert result.fits[0].name in ("saturating", "log", "power")
    assert result.gains[1].low > 0  # the first task helps ...
    assert result.gains[9].high < result.gains[1].low  # ... far more than the ninth
    margin = next(f for f in result.fits if f.name == "linear").aic - result.fits[0].aic
    assert f"best fit by AIC: {result.fits[0].name} ({margin:.1f} AIC below linear)" in result.evidence[2]


def test_linear_curve_is_not_diminishing():
    result = analyse(_study(lambda k: 0.40 + 0.02 * k))
    assert result.verdict == "steady", result.evidence
    assert abs(result.slope["coef"] - 0.02) < 0.002
    assert result.fits[0].name == "linear"
    margin = result.fits[1].aic - result.fits[0].aic  # over the runner-up, not over itself
    assert f"linear ({margin:.1f} AIC below {result.fits[1].name})" in result.evidence[2]


def test_accelerating_curve_is_not_called_steady_or_diminishing():
    result = analyse(_study(lambda k: 0.40 + 0.003 * k**2))
    assert result.verdict == "accelerating", result.evidence


def test_noise_alone_is_inconclusive():
    result = analyse(_study(lambda k: 0.40, noise=0.02, seed=3))
    assert result.verdict == "inconclusive", result.evidence


def test_identical_scores_are_inconclusive_not_steady():
    result = analyse(_study(lambda k: 1 / 3, noise=0.0))
    assert result.verdict == "inconclusive" and "scored the same" in result.evidence[0]


def test_a_study_of_one_or_two_pipelines_is_inconclusive_without_fits():
    for n in (1, 2):  # a one-pipeline study once crashed curve_fit (more parameters than observations)
        result = analyse([Observation((), seed, 0.40 + 0.01 * seed) for seed in range(n)])
        assert result.verdict == "inconclusive"
        assert all(len(f.params) < n for f in result.fits)


def test_curve_intervals_cover_the_true_means_and_gains_are_differences():
    obs = _study(lambda k: 0.5 + 0.01 * k, noise=0.01)
    c = curve(obs)
    assert all(c[k].low <= c[k].mean <= c[k].high for k in c)
    assert sum(c[k].low <= 0.5 + 0.01 * k <= c[k].high for k in c) >= 8  # 95% intervals, 10 sizes
    gains = marginal_gains(obs)
    assert all(abs(gains[k].mean - (c[k].mean - c[k - 1].mean)) < 1e-12 for k in gains)


def test_a_gain_next_to_a_single_pipeline_carries_that_pipelines_own_noise():
    # The default study runs k = 0 and k = 9 once per seed. Their one pipeline is as noisy as any other, so
    # delta(1)'s interval takes its variance from the pooled residual variance: sqrt(1 + 1/9) residual SDs,
    # where the curve point at k = 1 has sqrt(1/9). (The bootstrap this replaced held the single run fixed and
    # gave delta(1) k = 1's interval: 48-63% coverage in the simulation.)
    k1 = [0.41, 0.405, 0.392, 0.405, 0.438, 0.415, 0.432, 0.405, 0.411]
    obs = [Observation((), 0, 0.401)] + [Observation((f"t{i}",), 0, s) for i, s in enumerate(k1)]
    gain = marginal_gains(obs)[1]
    c1 = curve(obs)[1]
    assert gain.mean == pytest.approx(np.mean(k1) - 0.401)
    t = stats.t.ppf(
        0.975, len(k1) - 1
    )  # k = 0 adds no degrees of freedom; nine singletons leave no room for task effects
    sd = np.std(k1, ddof=1)
    assert c1.high - c1.low == pytest.approx(2 * t * sd / 3)
    assert gain.high - gain.low == pytest.approx(2 * t * sd * np.sqrt(1 + 1 / 9))
    assert gain.low < gain.mean < gain.high


def test_attribution_finds_the_task_that_helps():
    # A task's effect is what including it adds over including an average task of the same size: mnli's +0.05
    # is +0.05 * 8/9 against the average of all nine, and every other task is 0.05/9 below that average.
    rng = np.random.default_rng(0)
    obs = [
        Observation(s, seed, 0.4 + 0.05 * ("mnli" in s) + rng.normal(0, 0.005))
        for s, seed in StudyDesign(subsets_per_size=3, seeds=(0, 1)).runs()
    ]
    effects = attribution(obs)
    assert effects["mnli"].low <= 0.05 * 8 / 9 <= effects["mnli"].high and effects["mnli"].low > 0.03
    assert sum(effects[t].low <= -0.05 / 9 <= effects[t].high for t in effects if t != "mnli") >= 7
    assert sum(e.mean for e in effects.values()) == pytest.approx(0, abs=1e-12)


def test_child_key_follows_the_resolved_recipe(monkeypatch):
    """A cached child pipeline is reused only for the same options *and* the same preset recipe."""
    from dataclasses import replace

    from stilts_mlflow import presets
    from stilts_mlflow.options import Options
    from stilts_mlflow.scaling.children import child_key

    opts = Options(preset="smoke", tasks=("mnli",))
    before = child_key(opts)
    assert child_key(replace(opts, progress=False)) == before
    smoke = presets.PRESETS["smoke"]
    monkeypatch.setitem(
        presets.PRESETS, "smoke", replace(smoke, target=replace(smoke.target, steps=smoke.target.steps + 1))
    )
    assert child_key(opts) != before


def test_a_new_config_field_at_its_default_keeps_every_key():
    """Phase and data keys hash the fields that differ from their defaults: a field added later (with a
    default) leaves cached runs reusable, a changed value does not."""
    from dataclasses import dataclass, make_dataclass, replace

    from stilts_mlflow.presets import TrainConfig, key_fields

    tc = TrainConfig(steps=400, freeze_embeddings=True)
    assert key_fields(tc) == {"steps": 400, "freeze_embeddings": True}
    extended = make_dataclass("TrainConfig", [("new_knob", int, 0)], bases=(TrainConfig,), frozen=True)
    assert key_fields(extended(steps=400, freeze_embeddings=True)) == key_fields(tc)
    assert key_fields(extended(steps=400, freeze_embeddings=True, new_knob=3))["new_knob"] == 3
    assert key_fields(replace(tc, steps=401)) != key_fields(tc)

    @dataclass(frozen=True)
    class Outer:
        train: TrainConfig
        name: str = "x"

    assert key_fields(Outer(tc)) == {"train": {"steps": 400, "freeze_embeddings": True}}


def test_report_lists_the_restarted_target_phases():
    from stilts_mlflow.scaling.report import markdown

    result = analyse(_study(lambda k: 0.40 + 0.01 * k))
    runs = [
        {"subset": [], "k": 0, "seed": 0, "target_attempts": 1},
        {"subset": ["squad", "anli"], "k": 2, "seed": 1, "target_attempts": 3},
    ]
    md = markdown(result, "study", True, runs)
    assert "1 of 2 target phases stayed on the plateau" in md
    assert "- k = 2 squad-anli, seed 1: 3 attempts" in md
    assert "k = 0 none" not in md
