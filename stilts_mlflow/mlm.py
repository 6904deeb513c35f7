"""The masked-LM loss over the document language's own vocabulary ("language softmax").

With one softmax over every language's tokens, MLM rewards keeping the languages apart: to put a masked
French word above its English translation the model must carry the language in every hidden state and
in the (tied) word embeddings. Scoring a masked token only against the tokens its document's language
uses (the pieces seen in that language's corpus, shared names and digits included) takes that reward
away, and it is cheaper: each language's few hundred pieces instead of the whole vocabulary. The
pretrained model is still a plain `XLMRobertaForMaskedLM` (the full decoder is kept); only the training
loss changes. Nothing crosses languages that a monolingual corpus would not give: no parallel data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from stilts_mlflow.features import Encoded

SPECIAL_IDS = 4  # XLM-R's <s>, <pad>, </s>, <unk> are ids 0..3


@dataclass
class LanguageVocab:
    """Per language (by index) the token ids it uses, and each id's position among them."""

    languages: tuple[str, ...]
    ids: list[torch.Tensor]  # per language: sorted token ids (long)
    local: torch.Tensor  # (languages, vocab): position of a token in its language's ids, -100 if unused
    _on: dict = field(default_factory=dict, repr=False)

    def to(self, device: torch.device) -> LanguageVocab:
        """The tables on `device` (copied once per device)."""
        if device.type == "cpu":
            return self
        if device not in self._on:
            self._on[device] = LanguageVocab(self.languages, [i.to(device) for i in self.ids], self.local.to(device))
        return self._on[device]


def language_vocab(sets: Mapping[str, Iterable[Encoded]], vocab_size: int, mask_id: int) -> LanguageVocab:
    """The vocabulary of each language from its MLM documents (every split given); stamps each feature
    with its language's index (`lang_id`), which collation turns into the batch's `lang` tensor."""
    languages = tuple(sorted(sets))
    ids, local = [], torch.full((len(languages), vocab_size), -100, dtype=torch.long)
    for index, lang in enumerate(languages):
        used = torch.zeros(vocab_size, dtype=torch.bool)
        used[:SPECIAL_IDS] = True
        used[mask_id] = True
        for enc in sets[lang]:
            for f in enc.features:
                f["lang_id"] = index
                used[f["input_ids"]] = True
        lang_ids = used.nonzero().squeeze(1)
        local[index, lang_ids] = torch.arange(len(lang_ids))
        ids.append(lang_ids)
    return LanguageVocab(languages, ids, local)


def language_softmax_loss(
    states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    gold: torch.Tensor,
    lang: torch.Tensor,
    vocab: LanguageVocab,
) -> torch.Tensor:
    """Mean cross-entropy of the masked positions' `states` (after the LM head's transform) against the
    output embeddings of their own language's tokens only. `gold`: token ids; `lang`: language index."""
    vocab = vocab.to(states.device)
    total = states.new_zeros(())
    for index in lang.unique().tolist():
        rows = lang == index
        ids = vocab.ids[index]
        logits = states[rows] @ weight[ids].T + bias[ids]
        total = total + F.cross_entropy(logits, vocab.local[index][gold[rows]], reduction="sum")
    return total / max(1, gold.numel())
