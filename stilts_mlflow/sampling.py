"""Which task each step trains on, and which examples go into its batch.

Multi-task sampling follows jiant / XTREME practice: proportional to training-set size, temperature
(p ~ n^(1/T); T=1 is proportional, large T is uniform), or capped proportional (p ~ min(n, cap)).
Batches come from length buckets (shuffle, sort chunks of 50 batches by length, shuffle the batches)
so padding stays small while order stays random. Everything is a pure function of (seed, step) or of
a small position (epoch, batch index), so a resumed run draws exactly what an unbroken one would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SAMPLERS: tuple[str, ...] = ("proportional", "temperature", "capped")


def task_weights(
    sizes: dict[str, int], method: str = "proportional", temperature: float = 2.0, cap: int = 0
) -> dict[str, float]:
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; allowed: {', '.join(SAMPLERS)}")
    if any(n <= 0 for n in sizes.values()):
        raise ValueError(f"every task needs training examples, got sizes {sizes}")
    if method == "temperature":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        raw = {t: n ** (1.0 / temperature) for t, n in sizes.items()}
    elif method == "capped":
        if cap <= 0:
            raise ValueError(f"the capped sampler needs cap > 0, got {cap}")
        raw = {t: min(n, cap) for t, n in sizes.items()}
    else:
        raw = dict(sizes)
    total = sum(raw.values())
    return {t: w / total for t, w in raw.items()}


def with_mlm(weights: dict[str, float], share: float, name: str = "mlm") -> dict[str, float]:
    """The tasks' weights scaled to 1 - share, and `name` (continued MLM) drawn with probability share."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"mlm_share must be between 0 and 1 (exclusive), got {share}")
    return {**{t: w * (1.0 - share) for t, w in weights.items()}, name: share}


def choose_task(weights: dict[str, float], seed: int, step: int) -> str:
    names = sorted(weights)
    return random.Random(f"{seed}-task-{step}").choices(names, [weights[n] for n in names])[0]


@dataclass
class BatchStream:
    """Length-bucketed batches of one task's examples, epoch after epoch."""

    name: str
    lengths: list[int]
    batch_size: int
    seed: int
    epoch: int = 0
    pos: int = 0
    _order: list[list[int]] = field(default_factory=list, repr=False)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}-{self.name}-{epoch}")
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        chunk = self.batch_size * 50
        out = []
        for i in range(0, len(idx), chunk):
            part = sorted(idx[i : i + chunk], key=lambda j: self.lengths[j])
            out.extend(part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size))
        rng.shuffle(out)
        return out

    def next(self) -> list[int]:
        if not self._order:
            self._order = self.batches(self.epoch)
        if self.pos >= len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self.batches(self.epoch)
        batch = self._order[self.pos]
        self.pos += 1
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict[str, int]) -> None:
        self.epoch, self.pos, self._order = state["epoch"], state["pos"], []


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation order: sorted by length (least padding), in fixed-size batches."""
    idx = sorted(range(len(lengths)), key=lambda j: lengths[j])
    return [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]
