"""Noisy-embedding fine-tuning: Gaussian noise on the word embeddings while a phase trains.

Fine-tuned on English alone, a classifier can key on the fine detail of English word vectors, detail that
another language's aligned words do not share: the words carry the same sense but land a little apart.
Noise of about that size in every training step (`TrainConfig.embedding_noise`, a multiple of the embedding
matrix's standard deviation) leaves it only the directions that other languages share with English (R3F,
Aghajanyan et al. 2021; NEFTune, Jain et al. 2023). Evaluation and export never see the noise: the hook acts
only while the embedding module is in training mode. It draws from torch's global generator, which
checkpoints save and restore, so a resumed run draws the same noise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def attach(embeddings: nn.Embedding, scale: float) -> RemovableHandle | None:
    """Add N(0, (scale * std(weights))^2) to the looked-up vectors in training mode, the std taken once, when
    the phase starts; None when scale is 0."""
    if scale <= 0:
        return None
    sigma = scale * float(embeddings.weight.detach().float().std())

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        return output + sigma * torch.randn(output.shape, device=output.device, dtype=output.dtype)

    return embeddings.register_forward_hook(hook)
