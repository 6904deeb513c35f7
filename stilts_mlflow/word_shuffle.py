"""Word shuffle: each word moves a few places within its sentence (Lample et al. 2018, "Unsupervised Machine
Translation Using Monolingual Corpora Only", Sec. 2.3: word i goes to the rank of i + U(0, alpha)).

In the target phase it shows the classifier English pairs whose words are not always in English's order, so it
cannot rely on where a word sits: what other languages' constituent orders (SOV, noun-adjective) change. Words
are sentencepiece words (a piece starting with "▁" opens one); special tokens and padding stay where they are,
and so does each segment's last word (its period). Pieces of one word move together, in their order.
"""

from __future__ import annotations

import torch

WORD_START = "\u2581"


def word_starts(tokenizer) -> torch.Tensor:
    """A bool per token id: does the piece open a word?"""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return torch.tensor([p is not None and p.startswith(WORD_START) for p in pieces])


def shuffle(
    ids: torch.Tensor, starts: torch.Tensor, special: torch.Tensor, alpha: float, generator: torch.Generator | None
) -> torch.Tensor:
    """`ids` (batch x length) with each segment's words shuffled by at most `alpha` places; `special`: the ids
    that separate segments and never move (bos, eos, pad, ...)."""
    if alpha <= 0:
        return ids
    fixed = torch.isin(ids, special)
    after_fixed = torch.zeros_like(fixed)
    after_fixed[:, 1:] = fixed[:, :-1]
    opens = starts[ids] | fixed | after_fixed  # a word opens at a "▁" piece, a special, or right after one
    word = opens.long().cumsum(dim=1) - 1  # word index within the row
    segment = fixed.long().cumsum(dim=1)  # a special opens a segment of its own (it sorts first in it)
    length = ids.shape[1]
    noise = torch.rand(ids.shape, generator=generator) * alpha
    # a segment's last word: the next word starts in another segment (or the row ends)
    next_segment = torch.full_like(segment, -1)
    word_segment = torch.zeros_like(segment).scatter_(1, word, segment)  # segment of each word index
    next_segment[:, :-1] = word_segment[:, 1:]
    last = (next_segment.gather(1, word) != segment) | (word == word.max(dim=1, keepdim=True).values)
    word_noise = noise.gather(1, word)
    offset = torch.where(last, torch.full_like(word_noise, alpha + 1.0), word_noise)
    key = word.double() + offset.double()
    key = torch.where(fixed, word.double() - 0.5, key)  # a special before every word of its segment
    key = key + segment.double() * (2 * length + alpha + 2)  # segments never mix
    order = torch.sort(key, dim=1, stable=True).indices  # a word's pieces share a key: they keep their order
    return ids.gather(1, order)
