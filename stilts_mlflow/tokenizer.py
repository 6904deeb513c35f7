"""XLM-R-style tokenizer: a SentencePiece unigram model trained with `tokenizers` on the corpus.

Saved with `save_pretrained` as an XLMRobertaTokenizer directory, so `AutoTokenizer.from_pretrained`
loads it exactly as it loads the real XLM-R tokenizer (which real presets use through the same call).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

log = logging.getLogger(__name__)

# XLM-R's special tokens, in its id order (<s>=0, <pad>=1, </s>=2, <unk>=3; <mask> last).
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path, alphabet: list[str] | None = None) -> Path:
    """Train on `texts`; every character of `alphabet` gets a piece (SentencePiece's full coverage)."""
    from transformers import XLMRobertaTokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), unk_token="<unk>",
                                      shrinking_factor=0.75, max_piece_length=8, show_progress=False,
                                      initial_alphabet=alphabet or [])
    tok.train_from_iterator(texts, trainer=trainer)
    pieces = [(p, s) for p, s in tok.get_vocab_with_scores() if p not in SPECIALS] \
        if hasattr(tok, "get_vocab_with_scores") else _pieces(tok)
    vocab = [(s, 0.0) for s in SPECIALS] + pieces + [(MASK, 0.0)]
    hf = XLMRobertaTokenizer(vocab=vocab, add_prefix_space=True)
    hf.backend_tokenizer.normalizer = normalizers.NFKC()
    out = Path(out_dir)
    hf.save_pretrained(str(out))
    log.info("tokenizer: %d pieces -> %s", len(vocab), out)
    return out


def _pieces(tok: Tokenizer) -> list[tuple[str, float]]:
    import json

    model = json.loads(tok.to_str())["model"]
    return [(p, float(s)) for p, s in model["vocab"] if p not in SPECIALS]


def load_tokenizer(name_or_dir: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(name_or_dir))
