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
of freedom for the noise.
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

    @classmethod
    def build(cls, units: Units) -> StudyModels:
        k = units.k
        sizes = tuple(int(s) for s in sorted(set(k)))
        cells = np.column_stack([(k == s).astype(float) for s in sizes])
        z = task_columns(units)
        with_tasks = np.column_stack([cells, z])
        adjust = z.shape[1] > 0 and np.linalg.matrix_rank(with_tasks) == with_tasks.shape[1] \
            and len(k) - with_tasks.shape[1] >= MIN_DF
        tasks = units.tasks if adjust else ()
        z = z if adjust else np.zeros((len(k), 0))
        tnames = tuple(f"task:{t}" for t in tasks[:-1])
        center = float(k.mean())
        kc = k - center

        def model(columns: list[np.ndarray], names: tuple[str, ...]) -> LinearModel | None:
            x = np.column_stack(columns + [z])
            return LinearModel(x, names + tnames) if len(k) > x.shape[1] else None

        return cls(units, sizes, tasks, center,
                   LinearModel(np.column_stack([cells, z]), tuple(f"k={s}" for s in sizes) + tnames),
                   model([np.ones_like(k), kc], ("const", "k")) if len(sizes) >= 2 else None,
                   model([np.ones_like(k), kc, kc ** 2], ("const", "k", "k2")) if len(sizes) >= 3 else None)

    # --- contrasts (rows over a model's coefficients) ---------------------------------------------------
    def curve_contrasts(self) -> np.ndarray:
        """Mean at each size: the cell coefficients (task effects sum to zero at every size)."""
        return np.eye(len(self.sizes), self.cells.X.shape[1])

    def gain_contrasts(self) -> np.ndarray:
        """Δ(k) = mean(k) - mean(previous size run), for each size after the first."""
        c = self.curve_contrasts()
        return c[1:] - c[:-1]

    def task_contrasts(self, model: LinearModel) -> np.ndarray:
        """Each task's effect (the last one's is minus the sum of the others)."""
        n_tasks = len(self.tasks)
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
