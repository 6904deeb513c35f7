import os
from pathlib import Path

import pytest
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

from stilts_mlflow import export, spotcheck
from stilts_mlflow.export import xnli_dev

from stilts_mlflow.tasks.synthetic import SyntheticTasks
from stilts_mlflow.tokenizer import load_tokenizer, train_tokenizer
from stilts_mlflow.world import XNLI_LANGUAGES, World


@pytest.fixture(scope="session")
def world() -> World:
    return World(0)


@pytest.fixture(scope="session")
def tok(world, tmp_path_factory):
    """A small tokenizer trained on the synthetic MLM corpus of every language."""
    tasks = SyntheticTasks(world)
    texts = [r["text"] for lang in XNLI_LANGUAGES for r in tasks.generate("mlm", "train", lang, 40)]
    return load_tokenizer(train_tokenizer(texts, 1500, tmp_path_factory.mktemp("tok"), alphabet=world.alphabet()))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STILTS_CACHE", str(tmp_path / "cache"))
    # mlflow.set_experiment in a test leaves its id in mlflow's globals and in os.environ; the next test's
    # store has no such experiment. Restored after every test.
    import mlflow.tracking.fluent

    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


# --- an exported ONNX model (tests/test_export.py, tests/test_serving.py) ---------------------------
LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A random-init XLMRobertaForSequenceClassification with the smoke preset's trained tokenizer."""
    root = tmp_path_factory.mktemp("model")
    from helpers import stilts

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
def smoke_cache(tmp_path_factory):
    """A data cache shared by the session fixtures that read the smoke preset's data."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def dev(smoke_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STILTS_CACHE", str(smoke_cache))
        return {lang: rows[:40] for lang, rows in xnli_dev("smoke").items()}


@pytest.fixture(scope="session")
def spot_examples(smoke_cache):
    """What `stilts export` ships for GET /v1/examples: the smoke preset's test pairs, 20 per language."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STILTS_CACHE", str(smoke_cache))
        return spotcheck.for_preset("smoke")


@pytest.fixture(scope="session")
def exported(model_dir, dev, spot_examples, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    samples = {lang: [(a, b) for a, b, _ in rows[:8]] for lang, rows in dev.items()}
    return out, export.export_model(model_dir, out, samples, dev, examples=spot_examples)


def pytest_collection_finish(session):
    """Start the container images' slow set-up (debootstrap, wheels) now when their tests are to run: it
    overlaps the tests before them instead of adding minutes to the session (tests/test_containers.py)."""
    if session.config.option.collectonly or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    if any(Path(str(item.fspath)).name == "test_containers.py" for item in session.items):
        from helpers import start_container_prepare

        start_container_prepare()
