"""The study's joint models: one unit per task subset, and three least-squares models on those units.

Pipelines are not independent: every seed of a subset shares that subset's training, and subsets share
tasks. So the unit is the subset, scored by the mean over the seeds that ran it (each seed's shared offset
then cancels from every comparison between subsets), and every model carries each task's effect, so a
subset's score is the curve at its size plus the effects of the tasks in it:

- `cells`: one mean per size k (the curve and the marginal gains Δ(k)) + task effects;
- `line`: intercept and slope in k + task effects (steady or declining);
- `quadratic`: intercept, slope and curvature in k + task effects (diminishing or accelerating).

Task effects are coded to sum to zero: a task's effect is what including it adds compared with including
an average task of the same size, which is what the subsets of one size can tell apart. They are left out
(the report says so) when the design has too few subsets to estimate them and keep MIN_DF residual degrees
of freedom for the noise; the task attribution then comes from the line with task effects, where the design
leaves it any degree of freedom (a smoke study's twelve subsets), else there is none.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from stilts_mlflow.scaling.linear import LinearModel

MIN_DF = 3  # residual degrees of freedom the cell-means model must keep to carry task effects


@dataclass(frozen=True)
class Units:
    """One unit per task subset (sorted tuples), in first-seen order; `runs_per_unit` counts its seeds."""

    subsets: tuple[tuple[str, ...], ...]
    runs_per_unit: tuple[int, ...]
    run_unit: tuple[int, ...]  # for each run (pipeline), the index of its unit

    @classmethod
    def from_subsets(cls, run_subsets: Sequence[Sequence[str]]) -> Units:
        index: dict[tuple[str, ...], int] = {}
        run_unit = []
        for s in run_subsets:
            key = tuple(sorted(s))
            run_unit.append(index.setdefault(key, len(index)))
        counts: dict[int, int] = defaultdict(int)
        for u in run_unit:
            counts[u] += 1
        return cls(tuple(index), tuple(counts[i] for i in range(len(index))), tuple(run_unit))

    @property
    def k(self) -> np.ndarray:
        return np.array([len(s) for s in self.subsets], dtype=float)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted({t for s in self.subsets for t in s}))

    def means(self, scores: np.ndarray) -> np.ndarray:
        """Run scores (batch, runs) -> unit scores (batch, units): the mean over each subset's seeds."""
        scores = np.atleast_2d(scores)
        avg = np.zeros((len(self.run_unit), len(self.subsets)))
        avg[np.arange(len(self.run_unit)), self.run_unit] = 1.0
        return scores @ (avg / avg.sum(axis=0))


def task_columns(units: Units) -> np.ndarray:
    """Sum-to-zero coded task indicators: column t is x_t - x_last for every task but the last."""
    tasks = units.tasks
    x = np.array([[float(t in s) for t in tasks] for s in units.subsets]).reshape(len(units.subsets), len(tasks))
    return x[:, :-1] - x[:, [-1]] if len(tasks) > 1 else np.zeros((len(units.subsets), 0))


@dataclass(frozen=True)
class StudyModels:
    units: Units
    sizes: tuple[int, ...]
    tasks: tuple[str, ...]  # the tasks whose effects the models carry (empty: not adjusted)
    center: float  # k is centred here in the line and the quadratic (their slopes are at this k)
    cells: LinearModel
    line: LinearModel | None  # None with fewer than two sizes
    quadratic: LinearModel | None  # None with fewer than three sizes
    attribution: LinearModel | None  # the model the task effects are read from (None: not estimable)

    @classmethod
    def build(cls, units: Units) -> StudyModels:
        k = units.k
        sizes = tuple(int(s) for s in sorted(set(k)))
        cells = np.column_stack([(k == s).astype(float) for s in sizes])
        all_z = task_columns(units)
        center = float(k.mean())
        kc = k - center

        def model(columns: list[np.ndarray], names: tuple[str, ...], z: np.ndarray, min_df: int = 1):
            x = np.column_stack(columns + [z])
            full = np.linalg.matrix_rank(x) == x.shape[1]
            return (
                LinearModel(x, names + tuple(f"task:{t}" for t in units.tasks[:-1][: z.shape[1]]))
                if full and len(k) - x.shape[1] >= min_df
                else None
            )

        line_columns = [np.ones_like(k), kc]
        adjusted = model([cells], tuple(f"k={s}" for s in sizes), all_z, MIN_DF) if all_z.shape[1] else None
        z = all_z if adjusted is not None else np.zeros((len(k), 0))
        line = model(line_columns, ("const", "k"), z) if len(sizes) >= 2 else None
        attribution = adjusted
        if attribution is None and all_z.shape[1] and len(sizes) >= 2:
            attribution = model(line_columns, ("const", "k"), all_z)
        return cls(
            units,
            sizes,
            units.tasks if adjusted is not None else (),
            center,
            adjusted or LinearModel(cells, tuple(f"k={s}" for s in sizes)),
            line,
            model(line_columns + [kc**2], ("const", "k", "k2"), z) if len(sizes) >= 3 else None,
            attribution,
        )

    # --- contrasts (rows over a model's coefficients) ---------------------------------------------------
    def curve_contrasts(self) -> np.ndarray:
        """Mean at each size: the cell coefficients (task effects sum to zero at every size)."""
        return np.eye(len(self.sizes), self.cells.X.shape[1])

    def gain_contrasts(self) -> np.ndarray:
        """Δ(k) = mean(k) - mean(previous size run), for each size after the first."""
        c = self.curve_contrasts()
        return c[1:] - c[:-1]

    def task_contrasts(self, model: LinearModel) -> np.ndarray:
        """Each task's effect in `model` (the last one's is minus the sum of the others)."""
        n_tasks = len(self.units.tasks)
        first = model.X.shape[1] - (n_tasks - 1)
        c = np.zeros((n_tasks, model.X.shape[1]))
        c[np.arange(n_tasks - 1), first + np.arange(n_tasks - 1)] = 1.0
        c[n_tasks - 1, first:] = -1.0
        return c

    def coefficient(self, model: LinearModel, name: str) -> np.ndarray:
        c = np.zeros(model.X.shape[1])
        c[model.names.index(name)] = 1.0
        return c

    def slope_at(self, k: float) -> np.ndarray:
        """The quadratic's slope at k: b + 2 c (k - centre)."""
        c = self.coefficient(self.quadratic, "k") + 2 * (k - self.center) * self.coefficient(self.quadratic, "k2")
        return c
