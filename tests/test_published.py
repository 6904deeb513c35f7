"""The shipped encoder stilts-mini-xlmr: its files match the manifest, it was pretrained on the world the
generator makes today, it is registered once, and it still transfers (a regression guard)."""

import json
import shutil
from dataclasses import replace

import mlflow
import pytest
from mlflow import MlflowClient

from stilts_mlflow import published
from stilts_mlflow.options import Options
from stilts_mlflow.presets import get_preset
from stilts_mlflow.world import languages

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def shipped():
    return published.path(TINY.model.published)


def test_every_shipped_file_matches_its_manifest_sha256(shipped):
    manifest = published.verify(shipped)
    assert {"model.safetensors", "config.json"} <= set(manifest["files"])
    assert manifest["recipe"]["pretrain"]["steps"] == manifest["steps"] == TINY.pretrain.steps
    assert manifest["recipe"]["model"] == json.loads(json.dumps(TINY.model.__dict__))
    assert manifest["wall_seconds"] > 0 and manifest["seed"] == 0


def test_the_encoder_was_pretrained_on_the_world_the_generator_makes(shipped):
    published.verify(shipped, TINY.data)
    resolved = Options(preset="tiny").resolve()  # what pipelines verify: the data read by the shipped tokenizer
    assert resolved.data.tokenizer == "published:stilts-mini-xlmr"
    published.verify(shipped, resolved.data)


def test_a_changed_world_generator_is_refused_until_a_new_encoder_is_published(shipped, monkeypatch):
    monkeypatch.setitem(languages.LANGUAGES, "fr", replace(languages.LANGUAGES["fr"], loan_rate=0.0))
    with pytest.raises(published.PublishedEncoderError, match="world fingerprint"):
        published.verify(shipped, TINY.data)


def test_a_changed_file_is_refused_by_name(shipped, tmp_path):
    copy = tmp_path / "enc"
    shutil.copytree(shipped, copy)
    config = json.loads((copy / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(published.PublishedEncoderError, match="config.json: sha256 differs"):
        published.verify(copy)
    shutil.copy(shipped / "config.json", copy / "config.json")
    (copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(published.PublishedEncoderError, match="not in the manifest: extra.bin"):
        published.verify(copy)


def test_registered_once_with_alias_published(shipped, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        first = published.register(shipped)
        assert published.register(shipped) == first
        client = MlflowClient()
        versions = client.search_model_versions(f"name='{published.REGISTERED_NAME}'")
        assert len(versions) == 1
        mv = client.get_model_version_by_alias(published.REGISTERED_NAME, published.ALIAS)
        assert first.endswith(f"/{mv.version}")
        assert mv.tags["sha256"] == published.read_manifest(shipped)["files"]["model.safetensors"]
    finally:
        mlflow.set_tracking_uri(None)


GUARD_TEST = 150  # test pairs per language: 14 x 150 at chance give a non-English mean of 0.333 +- 0.010


@pytest.mark.slow
def test_the_published_encoder_still_transfers_after_a_smoke_sized_target_phase(shipped, tmp_path):
    """A regression guard, not a tuning target: one target phase (the tiny recipe, English NLI, early-stopped once
    learned) from the shipped encoder must put the other languages' average clearly above chance (4 standard
    errors), without any intermediate task or MLflow."""
    import torch
    from transformers import XLMRobertaForMaskedLM

    from stilts_mlflow.evaluate import zero_shot
    from stilts_mlflow.features import encode
    from stilts_mlflow.mlm import language_vocab
    from stilts_mlflow.model import HeadSpec, MultiTaskModel
    from stilts_mlflow.neighbours import neighbour_table
    from stilts_mlflow.tasks import get_task
    from stilts_mlflow.tasks.synthetic import SyntheticTasks
    from stilts_mlflow.tokenizer import load_tokenizer
    from stilts_mlflow.train import PhaseConfig, train_phase
    from stilts_mlflow.world import XNLI_LANGUAGES, World

    torch.manual_seed(0)
    tok = load_tokenizer(shipped)
    tasks, spec = SyntheticTasks(World(TINY.data.world_seed)), get_task("xnli")

    def data(split, lang, n):
        return encode(spec, tasks.generate("xnli", split, lang, n), tok, TINY.model.max_length)

    pretrained = XLMRobertaForMaskedLM.from_pretrained(str(shipped))
    model = MultiTaskModel(pretrained.config, [HeadSpec("nli", "classification", 3)])
    model.load_encoder_from(pretrained)
    tc = replace(TINY.target, checkpoint_every=TINY.target.steps)  # the preset's target recipe, seed 0
    # its neighbour swaps need each language's tokens: read off a slice of the MLM corpus
    mlm = {
        lang: [encode(get_task("mlm"), tasks.generate("mlm", "train", lang, 2000), tok, 64)] for lang in XNLI_LANGUAGES
    }
    vocab = language_vocab(mlm, len(tok), tok.mask_token_id)
    neighbours = neighbour_table(model.roberta.embeddings.word_embeddings.weight, vocab, tok.mask_token_id)
    train_phase(
        PhaseConfig("target", tc, seed=0),
        model,
        {"xnli": data("train", "en", TINY.data.xnli_train)},
        {"xnli": {"en": data("dev", "en", TINY.data.xnli_dev)}},
        tok,
        tmp_path / "target",
        progress=False,
        neighbours=neighbours,
    )
    metrics, _ = zero_shot(model, {lang: data("test", lang, GUARD_TEST) for lang in XNLI_LANGUAGES}, tok)
    assert metrics["test/accuracy.en"] > 0.6, metrics
    assert metrics["test/accuracy.non_en_avg"] > 1 / 3 + 4 * 0.0103, metrics


def test_publish_writes_a_verifiable_directory_in_place_of_the_old_one(shipped, tmp_path):
    source = tmp_path / "phase-output"
    shutil.copytree(shipped, source)
    (source / "manifest.json").unlink()
    (source / "DONE").write_text("key")  # phase bookkeeping stays behind
    target = tmp_path / "published" / "enc"
    metrics = {"steps": 36000, "seconds": 12.0, "mlm_loss": 0.8}
    for _ in range(2):  # the second publish replaces the first
        manifest = published.publish(source, target, TINY, 0, metrics)
    assert published.verify(target, TINY.data) == manifest and "DONE" not in manifest["files"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["enc"]
