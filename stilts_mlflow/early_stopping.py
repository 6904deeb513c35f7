"""Early stopping on a dev score (higher is better), with the guards a noisy small run needs.

A run stops after `patience` evaluations without a gain of more than `min_delta` over the best score, but
never before `min_steps` and never while the best score is below `stop_above` (a run still at chance is on
its plateau, not finished). `patience` 0 never stops. A run still below `stop_above` at step `give_up_at`
(> 0) gives up: it has not left its plateau, and another seed is the better bet. The state is four numbers,
kept in checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class EarlyStopping:
    patience: int = 0
    min_steps: int = 0
    min_delta: float = 0.0
    stop_above: float = -math.inf
    give_up_at: int = 0
    best_score: float | None = None
    best_step: int = 0
    bad_evals: int = 0

    @classmethod
    def from_config(cls, tc: Any) -> EarlyStopping:
        """The rule of a TrainConfig (patience, min_steps, min_delta, stop_above, restart_at)."""
        return cls(tc.patience, tc.min_steps, tc.min_delta, tc.stop_above, tc.restart_at)

    def update(self, score: float, step: int) -> bool:
        """Record an evaluation; True when it is a new best (its weights are the ones to keep). A new best
        that gains no more than `min_delta` still counts against patience."""
        if self.best_score is not None and score <= self.best_score:
            self.bad_evals += 1
            return False
        gain = math.inf if self.best_score is None else score - self.best_score
        self.best_score, self.best_step = score, step
        self.bad_evals = 0 if gain > self.min_delta else self.bad_evals + 1
        return True

    def should_stop(self, step: int) -> bool:
        return (
            self.patience > 0
            and step >= self.min_steps
            and self.best_score is not None
            and self.best_score >= self.stop_above
            and self.bad_evals >= self.patience
        )

    def gives_up(self, step: int) -> bool:
        return (
            self.give_up_at > 0
            and step >= self.give_up_at
            and (self.best_score is None or self.best_score < self.stop_above)
        )

    def restart(self) -> None:
        """Forget the best score (a new stage of the phase starts): the next evaluation is the best, and the
        phase no longer gives up."""
        self.best_score, self.best_step, self.bad_evals, self.give_up_at = None, 0, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "give_up_at": self.give_up_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_step, self.bad_evals = state["best_score"], state["best_step"], state["bad_evals"]
        self.give_up_at = state.get("give_up_at", self.give_up_at)
