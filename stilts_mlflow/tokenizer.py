"""XLM-R-style tokenizer: SentencePiece pieces with unigram scores, trained on the corpus.

The pieces are learned with the `sentencepiece` library (Kudo & Richardson 2018) and saved with
`save_pretrained` as an XLMRobertaTokenizer directory (pieces and their unigram log-probabilities,
XLM-R's special ids), so `AutoTokenizer.from_pretrained` loads it exactly as it loads the real XLM-R
tokenizer, which real presets use through the same call.

Why BPE merges choose the pieces: on this small synthetic world SentencePiece's unigram trainer
stops at a few hundred pieces per language however large the vocabulary asked for, and splits
even the most frequent words ("the" -> `▁th e`, "is" -> `▁ is`, "shovel" -> `▁s hovel`), doubling
sequence length and hiding words from the encoder. BPE merges keep frequent words whole, as
XLM-R's 250k-piece vocabulary does for real languages. Each piece's unigram score is then its
log-frequency in the BPE-segmented corpus (one EM step of the unigram model), so the saved
unigram tokenizer segments the corpus as BPE did.

`vocab_size` is the number of BPE pieces asked for; the saved vocabulary then drops the pieces
that no corpus text is segmented into (merge steps on the way to longer pieces), keeping every
single character. On the tiny world that is 10,000 -> 6,574 pieces: the same
segmentation of every corpus text, and an MLM output layer (most of pretraining's FLOPs) 35% smaller.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# XLM-R's special tokens, in its id order (<s>=0, <pad>=1, </s>=2, <unk>=3; <mask> last).
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"
TOKENIZER_VERSION = "sp3-bpe-used"  # part of the tokenizer cache key: bump when training changes


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, alphabet: list[str] | None = None
) -> Path:
    """Train on `texts`; `alphabet` characters are all kept (SentencePiece's full character coverage)."""
    texts = list(texts)
    pieces = bpe_pieces(texts, vocab_size, alphabet)
    hf = _xlmr_tokenizer(drop_unused(pieces, texts))
    out = Path(out_dir)
    hf.save_pretrained(str(out))
    log.info("tokenizer: %d pieces (%d BPE pieces before dropping unused ones) -> %s", len(hf), len(pieces), out)
    return out


def bpe_pieces(texts: list[str], vocab_size: int, alphabet: list[str] | None = None) -> list[tuple[str, float]]:
    """SentencePiece BPE pieces with their unigram log-frequency in the BPE-segmented corpus."""
    import math
    from collections import Counter

    import sentencepiece as spm

    if alphabet:
        texts = texts + [" ".join(alphabet)]  # every character seen at least once
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type="bpe",
        character_coverage=1.0,
        max_sentencepiece_length=16,
        split_digits=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
        normalization_rule_name="identity",
    )  # the saved XLMRobertaTokenizer applies no normalizer either
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    counts = Counter(i for ids in sp.encode(texts) for i in ids)
    total = sum(counts.values())
    return [
        (sp.id_to_piece(i), math.log((counts[i] + 0.1) / total))
        for i in range(sp.get_piece_size())
        if not (sp.is_unknown(i) or sp.is_control(i))
    ]


def drop_unused(pieces: list[tuple[str, float]], texts: list[str]) -> list[tuple[str, float]]:
    """The pieces the tokenizer built from `pieces` segments `texts` into, and every single character."""
    ids = _xlmr_tokenizer(pieces)(texts, add_special_tokens=False)["input_ids"]
    used = {i for row in ids for i in row}
    return [
        (piece, score)
        for i, (piece, score) in enumerate(pieces, start=len(SPECIALS))
        if i in used or len(piece.lstrip("\u2581")) <= 1
    ]


def _xlmr_tokenizer(pieces: list[tuple[str, float]]):
    from transformers import XLMRobertaTokenizer

    return XLMRobertaTokenizer(vocab=[(s, 0.0) for s in SPECIALS] + pieces + [(MASK, 0.0)], add_prefix_space=True)


def load_tokenizer(name_or_dir: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(name_or_dir))
