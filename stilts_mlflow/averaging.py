"""Weight averaging while fine-tuning: an exponential moving average of the weights is what a phase evaluates,
keeps and hands on.

Zero-shot transfer from one English fine-tune varies a lot with the seed and the stopping point; averaging the
weights along the run makes it both better and steadier (Schmidt et al. 2023, "Free Lunch: Robust
Cross-Lingual Transfer via Model Checkpoint Averaging"; Izmailov et al. 2018, SWA). torch's AveragedModel keeps
the average; `TrainConfig.weight_average` is its decay (0: off, the raw weights are kept).
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make(model: nn.Module, decay: float) -> AveragedModel | None:
    """An EMA of `model`'s parameters with this decay per optimizer step; None when decay is 0. Buffers are
    copied, not averaged: the encoder's are integer position and token-type ids. Make it before any
    training-only hook is attached: the copy would carry the hook along."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
