"""The language softmax (mlm.py): each masked token is scored against its own language's tokens only."""

import pytest
import torch
from torch.nn import functional as F

from stilts_mlflow.features import Encoded, collate
from stilts_mlflow.mlm import language_vocab
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.presets import TrainConfig, get_preset
from stilts_mlflow.tasks import get_task

VOCAB, MASK = 40, 39


def _corpus(docs: list[list[int]]) -> Encoded:
    return Encoded(get_task("mlm"), [{"input_ids": [0, *d, 2], "length": len(d) + 2} for d in docs], ())


def _sets():
    # "en" uses 4-13 and the shared 30-31 (names, digits); "fr" 14-23 and 30-31; the dev split adds 24 to fr
    return {
        "en": [_corpus([[4, 5, 6, 30], [7, 8, 9, 10, 11, 12, 13, 31]])],
        "fr": [_corpus([[14, 15, 16, 17, 30], [18, 19, 20, 21, 22, 23, 31]]), _corpus([[24, 14]])],
    }


def test_each_language_gets_the_tokens_its_documents_use_and_its_features_their_language():
    sets = _sets()
    vocab = language_vocab(sets, VOCAB, MASK)
    assert vocab.languages == ("en", "fr")
    specials = [0, 1, 2, 3]
    assert vocab.ids[0].tolist() == specials + list(range(4, 14)) + [30, 31, MASK]
    assert vocab.ids[1].tolist() == specials + list(range(14, 25)) + [30, 31, MASK]  # dev's 24 included
    for index, ids in enumerate(vocab.ids):
        assert vocab.local[index][ids].tolist() == list(range(len(ids)))
    assert vocab.local[0, 14] == -100 and vocab.local[1, 4] == -100
    assert [f["lang_id"] for enc in sets["fr"] for f in enc.features] == [1, 1, 1]
    batch = collate(
        "mlm",
        sets["en"][0].features + sets["fr"][1].features,
        1,
        MASK,
        VOCAB,
        generator=torch.Generator().manual_seed(0),
    )
    assert batch["lang"].tolist() == [0, 0, 1]


def test_loss_equals_the_full_softmax_with_other_languages_tokens_left_out():
    torch.manual_seed(0)
    sets = _sets()
    model = MultiTaskModel(encoder_config(get_preset("smoke").model, VOCAB), [HeadSpec("mlm", "mlm")]).eval()
    vocab = language_vocab(sets, VOCAB, MASK)
    features = [f for enc in sets["en"] + sets["fr"] for f in enc.features]
    batch = collate("mlm", features, 1, MASK, VOCAB, mlm_probability=0.5, generator=torch.Generator().manual_seed(1))
    labels, lang = batch["labels"], batch["lang"]
    assert set(lang[(labels != -100).any(1)].tolist()) == {0, 1}  # both languages have masked tokens

    full_loss, _ = model("mlm", batch["input_ids"], batch["attention_mask"], labels=labels)  # no vocab: full softmax
    model.mlm_vocab = vocab
    loss, _ = model("mlm", **batch)
    # reference: the full logits, every token of another language masked out
    hidden = model.roberta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = model.heads["mlm"](hidden)
    allowed = model.mlm_vocab.local[lang] != -100  # (batch, vocab)
    logits = logits.masked_fill(~allowed[:, None, :], float("-inf"))
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    assert loss < full_loss  # fewer competitors for every masked token

    model.train()
    model("mlm", **batch)[0].backward()
    grad = model.heads["mlm"].decoder.bias.grad
    assert grad[list(range(4, 25)) + [30, 31]].abs().sum() > 0
    assert grad[25:30].abs().sum() == 0  # used by no language: never a competitor


def test_an_unknown_mlm_softmax_is_refused_by_name():
    with pytest.raises(ValueError, match="mlm_softmax must be one of full, language; got 'word'"):
        TrainConfig(mlm_softmax="word")
