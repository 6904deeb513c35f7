"""The training loop (train.py): frozen parameters, early stopping inside a real phase, config checks."""

import pytest
import torch

from stilts_mlflow.features import encode
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.options import Options
from stilts_mlflow.presets import ModelConfig
from stilts_mlflow.tasks.spec import TASKS
from stilts_mlflow.tasks.synthetic import SyntheticTasks
from helpers import tiny_model


def test_frozen_embeddings_stay_put_and_a_random_encoder_is_not_frozen():
    from dataclasses import replace

    from stilts_mlflow.phases import fine_tune_config
    from stilts_mlflow.presets import get_preset
    from stilts_mlflow.train import _optimizer

    tc = get_preset("tiny").target
    assert tc.freeze_embeddings and not fine_tune_config(tc, Options(preset="tiny", pretrain="skip")).freeze_embeddings
    inter = get_preset("tiny").intermediate  # continued MLM keeps pretraining; a random encoder has none to keep
    assert inter.mlm_share > 0 and fine_tune_config(inter, Options(preset="tiny", pretrain="skip")).mlm_share == 0
    assert fine_tune_config(tc, Options(preset="tiny")).freeze_embeddings
    model, _, _ = tiny_model()
    opt = _optimizer(model, replace(tc, learning_rate=1e-2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model("nli", torch.randint(4, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long), torch.tensor([0, 1]))[0].backward()
    opt.step()
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any("word_embeddings" in k for k in moved)
    assert any("position_embeddings" in k for k in moved) and any("classifier" in k or "heads" in k for k in moved)

    # freeze_layers: the lowest encoder layers stay put too, the rest learn
    model = MultiTaskModel(
        encoder_config(ModelConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32), 50),
        [HeadSpec("nli", "classification", 3)],
    )
    opt = _optimizer(model, replace(tc, learning_rate=1e-2, freeze_layers=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model("nli", torch.randint(4, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long), torch.tensor([0, 1]))[0].backward()
    opt.step()
    moved = {k for k in before if not torch.equal(before[k], model.state_dict()[k])}
    assert not any(k.startswith("roberta.encoder.layer.0.") for k in moved)
    assert any(k.startswith("roberta.encoder.layer.1.") for k in moved)


@pytest.mark.parametrize("min_steps,stop_above,stopped_at", [(0, 0.0, 4), (9, 0.0, 10), (40, 0.0, 20), (0, 1.01, 20)])
def test_early_stopping_waits_for_min_steps_and_a_score_past_the_plateau(
    world, tok, tmp_path, min_steps, stop_above, stopped_at
):
    """A run whose dev score never improves (learning rate 0) stops after `patience` evaluations, but not
    before `min_steps`, nor while its best score is below `stop_above`: a plateau is no reason to stop."""
    from stilts_mlflow.presets import TrainConfig
    from stilts_mlflow.train import PhaseConfig, train_phase

    recs = SyntheticTasks(world).generate("xnli", "train", "en", 24)
    enc = encode(TASKS["xnli"], recs, tok, 64)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
    tc = TrainConfig(
        learning_rate=0.0,
        batch_size=8,
        steps=20,
        eval_every=2,
        checkpoint_every=100,
        patience=1,
        min_steps=min_steps,
        stop_above=stop_above,
    )
    result = train_phase(
        PhaseConfig("target", tc), model, {"xnli": enc}, {"xnli": {"en": enc}}, tok, tmp_path, progress=False
    )
    assert result.steps == stopped_at and result.best_step == 2


@pytest.mark.parametrize("min_delta,stopped_at,best_step", [(0.0, 20, 20), (0.01, 6, 6), (0.001, 20, 20)])
def test_early_stopping_counts_only_gains_above_min_delta(
    world, tok, tmp_path, monkeypatch, min_delta, stopped_at, best_step
):
    """English dev creeping up by less than `min_delta` per evaluation is no progress for early stopping, yet
    the best checkpoint is still the best score (HF's early_stopping_threshold)."""
    import stilts_mlflow.train as train
    from stilts_mlflow.presets import TrainConfig

    scores = iter([0.5 + 0.003 * i for i in range(20)])  # +0.003 per evaluation
    monkeypatch.setattr(train, "evaluate_tasks", lambda *a, **k: {"xnli/accuracy.en": next(scores)})
    recs = SyntheticTasks(world).generate("xnli", "train", "en", 24)
    enc = encode(TASKS["xnli"], recs, tok, 64)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
    tc = TrainConfig(
        learning_rate=1e-3, batch_size=8, steps=20, eval_every=2, checkpoint_every=100, patience=2, min_delta=min_delta
    )
    result = train.train_phase(
        train.PhaseConfig("target", tc), model, {"xnli": enc}, {"xnli": {"en": enc}}, tok, tmp_path, progress=False
    )
    assert (result.steps, result.best_step) == (stopped_at, best_step)


def test_train_config_rejects_a_negative_min_delta():
    from stilts_mlflow.presets import TrainConfig

    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        TrainConfig(min_delta=-0.1)
