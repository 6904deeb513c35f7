"""Noisy-embedding fine-tuning (noise.py): noise of the asked size in training steps only, never at
evaluation, and gone once the phase ends."""

import pytest
import torch

from stilts_mlflow import noise
from stilts_mlflow.features import encode
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.presets import ModelConfig, TrainConfig
from stilts_mlflow.tasks.spec import TASKS
from stilts_mlflow.tasks.synthetic import SyntheticTasks


def test_noise_has_the_asked_size_in_training_and_none_in_evaluation():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(500, 32)
    ids = torch.randint(0, 500, (64, 40))
    clean = emb(ids).detach()
    handle = noise.attach(emb, 0.5)
    emb.train()
    diff = emb(ids).detach() - clean
    assert diff.std().item() == pytest.approx(0.5 * emb.weight.std().item(), rel=0.05)
    assert abs(diff.mean().item()) < 0.1 * emb.weight.std().item()
    assert not torch.equal(emb(ids), emb(ids))  # fresh noise every step
    emb.eval()
    assert torch.equal(emb(ids), clean)
    emb.train()
    handle.remove()
    assert torch.equal(emb(ids), clean)


def test_zero_noise_attaches_nothing_and_a_negative_one_is_refused():
    emb = torch.nn.Embedding(10, 4)
    assert noise.attach(emb, 0.0) is None and not emb._forward_hooks
    with pytest.raises(ValueError, match="embedding_noise must be >= 0"):
        TrainConfig(embedding_noise=-0.1)


def test_a_noisy_phase_trains_with_noise_and_leaves_a_clean_model(world, tok, tmp_path, monkeypatch):
    """The same phase with and without noise ends in different weights (the noise reached training), and the
    model it returns has no hook left: evaluation and export see clean embeddings."""
    import stilts_mlflow.train as train

    recs = SyntheticTasks(world).generate("xnli", "train", "en", 24)
    enc = encode(TASKS["xnli"], recs, tok, 64)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    in_eval, draws = [False], []
    real_eval, real_randn = train.evaluate_tasks, torch.randn

    def evaluate(*a, **k):
        in_eval[0] = True
        try:
            return real_eval(*a, **k)
        finally:
            in_eval[0] = False

    monkeypatch.setattr(train, "evaluate_tasks", evaluate)
    monkeypatch.setattr(torch, "randn", lambda *a, **k: draws.append(in_eval[0]) or real_randn(*a, **k))
    weights = {}
    for scale in (0.0, 1.0):
        torch.manual_seed(0)
        model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
        tc = TrainConfig(
            learning_rate=1e-3, batch_size=8, steps=4, eval_every=2, checkpoint_every=100, embedding_noise=scale
        )
        train.train_phase(
            train.PhaseConfig("target", tc),
            model,
            {"xnli": enc},
            {"xnli": {"en": enc}},
            tok,
            tmp_path / str(scale),
            progress=False,
        )
        assert not model.roberta.embeddings.word_embeddings._forward_hooks
        weights[scale] = model.heads["nli"].out_proj.weight.detach().clone()
    assert not torch.equal(weights[0.0], weights[1.0])
    assert draws.count(False) >= 4 and not any(draws)  # noise in every training step, none in dev evaluations
