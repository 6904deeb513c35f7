"""Which subsets of the intermediate tasks the study trains on.

Sizes where there are few subsets (k = 0, 1, n-1, n, or any size with no more subsets than asked
for) are run in full. Other sizes get a sample of `per_size` distinct subsets in which every task
appears equally often (counts differ by at most one), so no task is over-represented at any k and
the curve over k is not a curve over which tasks happened to be drawn.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass

from stilts_mlflow.tasks import INTERMEDIATE_TASKS


@dataclass(frozen=True)
class StudyDesign:
    tasks: tuple[str, ...] = INTERMEDIATE_TASKS
    sizes: tuple[int, ...] = tuple(range(len(INTERMEDIATE_TASKS) + 1))
    subsets_per_size: int = 2
    seeds: tuple[int, ...] = (0,)
    design_seed: int = 0

    def __post_init__(self):
        n = len(self.tasks)
        if len(set(self.tasks)) != n:
            raise ValueError(f"tasks must be distinct; got {', '.join(self.tasks)}")
        bad = [k for k in self.sizes if not 0 <= k <= n]
        if bad:
            raise ValueError(f"sizes must lie in 0..{n} (number of tasks); got {bad}")
        if self.subsets_per_size < 1:
            raise ValueError(f"subsets_per_size must be >= 1; got {self.subsets_per_size}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be one or more integers >= 0; got {self.seeds}")

    def subsets(self) -> list[tuple[str, ...]]:
        """Every subset the study trains on, by size, each sorted by task name."""
        return [
            s
            for k in sorted(set(self.sizes))
            for s in subsets_of_size(self.tasks, k, self.subsets_per_size, self.design_seed)
        ]

    def runs(self) -> list[tuple[tuple[str, ...], int]]:
        """(subset, seed) pairs: one pipeline each."""
        return [(s, seed) for s in self.subsets() for seed in self.seeds]


def run_in_full(n: int, k: int, per_size: int) -> bool:
    return k in (0, 1, n - 1, n) or math.comb(n, k) <= per_size


def subsets_of_size(tasks: tuple[str, ...], k: int, per_size: int, seed: int = 0) -> list[tuple[str, ...]]:
    n = len(tasks)
    if run_in_full(n, k, per_size):
        return [tuple(sorted(c)) for c in itertools.combinations(sorted(tasks), k)]
    rng = random.Random(f"design-{seed}-{k}")
    for _ in range(1000):  # greedy balanced draws; restart on the rare dead end (a repeated subset)
        chosen = _balanced_draw(sorted(tasks), k, per_size, rng)
        if chosen is not None:
            return chosen
    raise RuntimeError(f"no balanced design of {per_size} subsets of size {k} from {n} tasks")


def _balanced_draw(tasks: list[str], k: int, per_size: int, rng: random.Random) -> list[tuple[str, ...]] | None:
    counts: Counter[str] = Counter({t: 0 for t in tasks})
    chosen: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for _ in range(per_size):
        for _attempt in range(50):
            order = sorted(tasks, key=lambda t: (counts[t], rng.random()))  # least used first, ties at random
            subset = tuple(sorted(order[:k]))
            if subset not in seen:
                break
        else:
            return None
        seen.add(subset)
        chosen.append(subset)
        counts.update(subset)
    return chosen
