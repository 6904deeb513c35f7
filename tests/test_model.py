import torch
from transformers import AutoModelForSequenceClassification, XLMRobertaForMaskedLM

from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.presets import get_preset


def _model():
    cfg = encoder_config(get_preset("smoke").model, vocab_size=50)
    heads = [
        HeadSpec("nli", "classification", 3),
        HeadSpec("span", "span_qa"),
        HeadSpec("mc", "multiple_choice"),
        HeadSpec("ccg", "tagging", 7),
        HeadSpec("mlm", "mlm"),
    ]
    return MultiTaskModel(cfg, heads)


def test_every_head_kind_trains_on_one_shared_encoder():
    torch.manual_seed(0)
    model = _model()
    ids = torch.randint(4, 50, (2, 9))
    mask = torch.ones_like(ids)
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[0, [1, 4, 7]] = ids[0, [1, 4, 7]]
    mlm_labels[1, [2, 3]] = ids[1, [2, 3]]
    out = {
        "nli": model("nli", ids, mask, labels=torch.tensor([0, 2])),
        "span": model("span", ids, mask, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4])),
        "mc": model(
            "mc", ids.unsqueeze(1).expand(2, 4, 9), mask.unsqueeze(1).expand(2, 4, 9), labels=torch.tensor([1, 3])
        ),
        "ccg": model("ccg", ids, mask, labels=torch.randint(0, 7, (2, 9))),
        "mlm": model("mlm", ids, mask, labels=mlm_labels),
    }
    shapes = {k: tuple(v[1].shape) for k, v in out.items()}
    assert shapes == {"nli": (2, 3), "span": (2, 9, 2), "mc": (2, 4), "ccg": (2, 9, 7), "mlm": (5, 50)}
    # the MLM head scores masked positions only; the loss equals full-position scoring
    model.eval()
    full = model("mlm", ids, mask)[1]
    masked = model("mlm", ids, mask, labels=mlm_labels)[0]
    expected = torch.nn.functional.cross_entropy(full.reshape(-1, 50), mlm_labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(masked, expected, atol=1e-6)
    model.train()
    sum(loss for loss, _ in out.values()).backward()
    assert model.roberta.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.heads["mlm"].decoder.weight is model.roberta.embeddings.word_embeddings.weight


def test_heads_are_shared_by_name_and_conflicts_refused():
    model = _model()
    model.add_head(HeadSpec("nli", "classification", 3))  # mnli, anli, xnli: same head
    assert len(model.heads) == 5
    try:
        model.add_head(HeadSpec("nli", "classification", 2))
    except ValueError as exc:
        assert "already exists" in str(exc)
    else:
        raise AssertionError("conflicting head accepted")


def test_target_model_round_trips_as_transformers_classifier(tmp_path):
    torch.manual_seed(0)
    model = _model().eval()
    ids, mask = torch.randint(4, 50, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    _, ours = model("nli", ids, mask)

    class _NoTokenizer:
        def save_pretrained(self, path):
            pass

    model.save_sequence_classification(tmp_path / "target", _NoTokenizer())
    assert (tmp_path / "target" / "model.safetensors").exists()
    hf = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "target")).eval()
    assert hf.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    torch.testing.assert_close(hf(input_ids=ids, attention_mask=mask).logits, ours, atol=1e-5, rtol=1e-5)


def test_encoder_loads_from_masked_lm():
    model = _model()
    mlm = XLMRobertaForMaskedLM(model.config)
    model.load_encoder_from(mlm)
    torch.testing.assert_close(
        model.roberta.embeddings.word_embeddings.weight, mlm.roberta.embeddings.word_embeddings.weight
    )
    back = model.to_masked_lm()
    torch.testing.assert_close(back.lm_head.dense.weight, mlm.lm_head.dense.weight)
