import pytest
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

from stilts_mlflow import export
from stilts_mlflow.registry import xnli_dev

from stilts_mlflow.world import World


@pytest.fixture(scope="session")
def world() -> World:
    return World(0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STILTS_CACHE", str(tmp_path / "cache"))


# --- an exported ONNX model (tests/test_export.py, tests/test_serving.py) ---------------------------
LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A random-init XLMRobertaForSequenceClassification with the smoke preset's trained tokenizer."""
    root = tmp_path_factory.mktemp("model")
    from test_pipeline import stilts

    stilts(["data", "tokenizer", "--preset", "smoke", "--out", str(root / "m")], root, root / "cache")
    tok = AutoTokenizer.from_pretrained(str(root / "m"))
    cfg = XLMRobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
        num_labels=3,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    XLMRobertaForSequenceClassification(cfg).save_pretrained(str(root / "m"))
    return root / "m"


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STILTS_CACHE", str(tmp_path_factory.mktemp("cache")))
        return {lang: rows[:40] for lang, rows in xnli_dev("smoke").items()}


@pytest.fixture(scope="session")
def exported(model_dir, dev, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    samples = {lang: [(a, b) for a, b, _ in rows[:8]] for lang, rows in dev.items()}
    return out, export.export_model(model_dir, out, samples, dev)
