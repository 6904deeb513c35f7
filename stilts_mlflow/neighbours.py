"""Cross-lingual neighbour swaps for the English target phase (unsupervised code-switching).

Zero-shot transfer fails where the English-trained classifier keys on detail of the English word vectors that
other languages' aligned words do not share (docs/miniature.md, "Where the transfer was lost"), although
those words' nearest English neighbours are right. So, during English fine-tuning, a share of each pair's
word types is replaced by their mutual nearest neighbour in the encoder's own word-embedding space among one
other language's tokens (a language drawn per pair): the classifier sees other languages' vectors in English
frames. The neighbours come from the encoder alone (cosine of its input embeddings, each language's tokens
read off its monolingual MLM corpus): no dictionary, no parallel text, no labels in another language
(dictionary-free code-switching as in knn-replace, Dufter & Schütze 2020, moved from pretraining to
fine-tuning; CoSDA-ML, Qin et al. 2020, does it with a bilingual dictionary).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from stilts_mlflow.mlm import SPECIAL_IDS, LanguageVocab


def neighbour_table(weight: torch.Tensor, vocab: LanguageVocab, mask_id: int, source: str = "en") -> torch.Tensor:
    """(other languages, vocab) token ids: row i maps every `source` token to its nearest neighbour (cosine of
    `weight`'s rows) among the i-th other language's tokens when they are mutual nearest neighbours (the
    usual filter of unsupervised lexicon induction); tokens the two languages share (names, digits,
    loanwords, punctuation), tokens without a mutual neighbour and every non-`source` token map to themselves."""
    unit = F.normalize(weight.detach().float(), dim=1)
    vocab_size = weight.shape[0]
    src = vocab.ids[vocab.languages.index(source)]
    src = src[(src >= SPECIAL_IDS) & (src != mask_id)]
    rows = []
    for index, lang in enumerate(vocab.languages):
        if lang == source:
            continue
        ids = vocab.ids[index]
        ids = ids[(ids >= SPECIAL_IDS) & (ids != mask_id)]
        sims = unit[src] @ unit[ids].T
        forward = sims.argmax(dim=1)  # each English token's nearest token of this language
        mutual = sims.argmax(dim=0)[forward] == torch.arange(len(src))  # ... whose nearest English token it is
        row = torch.arange(vocab_size)
        keep = (vocab.local[index][src] >= 0) | ~mutual  # shared tokens, and pairs that are not mutual, stay
        row[src] = torch.where(keep, src, ids[forward])
        rows.append(row)
    return torch.stack(rows)


def swap(ids: torch.Tensor, table: torch.Tensor, share: float, generator: torch.Generator | None) -> torch.Tensor:
    """`ids` (batch, length) with a `share` of each row's word types swapped for their neighbour in one
    language drawn per row. A type is swapped everywhere in its row or nowhere, so premise and hypothesis
    keep naming the same things; special tokens and padding never change (the table maps them to themselves)."""
    lang = torch.randint(0, table.shape[0], (ids.shape[0],), generator=generator)
    pick = torch.rand((ids.shape[0], table.shape[1]), generator=generator) < share
    return torch.where(pick.gather(1, ids), table[lang[:, None], ids], ids)
