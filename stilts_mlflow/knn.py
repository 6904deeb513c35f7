"""knn-replace (Dufter & Schuetze 2020, "Identifying Necessary Elements for BERT's Multilinguality", Sec. 4.3):
some masked positions show, instead of <mask>, the nearest neighbour of the original token among another
language's tokens, found by cosine in the model's own input embeddings; the model still predicts the
original. Unsupervised (no dictionary, no parallel text): early in training the neighbours are noise (like
BERT's random replacement); as the languages align they become translations, and the model learns to read
a word of one language in another's context, so the layers above the embeddings are shared across languages.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from stilts_mlflow.mlm import SPECIAL_IDS, LanguageVocab


class KnnReplacer:
    """Replaces a share `rate` of the predicted (masked) positions by a cross-lingual nearest neighbour."""

    def __init__(self, vocab: LanguageVocab, mask_id: int, rate: float):
        self.vocab, self.mask_id, self.rate = vocab, mask_id, rate
        self.table: torch.Tensor | None = None  # (vocab size, languages): nearest token of each language

    @torch.no_grad()
    def refresh(self, embeddings: torch.Tensor) -> None:
        """Nearest neighbours from the current input embeddings (called at fixed steps, so a resumed run
        recomputes the same table from the same weights)."""
        emb = F.normalize(embeddings.detach().float().cpu(), dim=1)
        table = torch.arange(emb.shape[0])[:, None].repeat(1, len(self.vocab.ids))
        for index, ids in enumerate(self.vocab.ids):
            ids = ids[(ids >= SPECIAL_IDS) & (ids != self.mask_id)]
            table[:, index] = ids[(emb @ emb[ids].T).argmax(1)]
        self.table = table

    def apply(self, input_ids: torch.Tensor, labels: torch.Tensor, lang: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        """`input_ids` with a share `rate` of the predicted positions (at most the <mask>ed ones) showing the
        original token's nearest neighbour in another language, drawn at random per position."""
        if self.table is None:
            return input_ids
        masked = (labels != -100) & (input_ids == self.mask_id)
        share = self.rate / max(float(masked.sum()) / max(int((labels != -100).sum()), 1), 1e-9)
        pick = masked & (torch.rand(input_ids.shape, generator=generator) < share)
        n = len(self.vocab.ids)
        other = (lang[:, None].expand_as(input_ids) + 1 + torch.randint(0, n - 1, input_ids.shape,
                                                                        generator=generator)) % n
        out = input_ids.clone()
        out[pick] = self.table[labels[pick], other[pick]]
        return out
