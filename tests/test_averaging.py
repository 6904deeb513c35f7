"""Weight averaging (averaging.py, TrainConfig.weight_average): the phase scores and keeps the exponential
moving average of its weights, checkpoints it, and a resumed run continues the same average."""

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

import stilts_mlflow.train as train
from stilts_mlflow.features import encode
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.presets import ModelConfig, TrainConfig
from stilts_mlflow.tasks.spec import TASKS
from stilts_mlflow.tasks.synthetic import SyntheticTasks


@pytest.fixture
def nli(world, tok):
    recs = SyntheticTasks(world).generate("xnli", "train", "en", 32)
    return encode(TASKS["xnli"], recs, tok, 64)


def _model(tok) -> MultiTaskModel:
    torch.manual_seed(0)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    return MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])


def _run(tok, nli, work, decay, **kw):
    model = _model(tok)
    tc = TrainConfig(learning_rate=1e-2, batch_size=8, steps=6, eval_every=6, checkpoint_every=2, weight_average=decay)
    train.train_phase(
        train.PhaseConfig("target", tc, **kw), model, {"xnli": nli}, {"xnli": {"en": nli}}, tok, work, progress=False
    )
    return model


def test_the_phase_keeps_the_moving_average_of_its_raw_weights(tok, nli, tmp_path, monkeypatch):
    """Its result is d * average + (1 - d) * raw after every step (the first step copies), not the raw weights."""
    raw_after_step = []
    update = AveragedModel.update_parameters
    monkeypatch.setattr(
        AveragedModel,
        "update_parameters",
        lambda self, m: raw_after_step.append(m.heads["nli"].out_proj.weight.detach().clone()) or update(self, m),
    )
    kept = _run(tok, nli, tmp_path / "avg", 0.5).heads["nli"].out_proj.weight.detach()
    assert len(raw_after_step) == 6
    expected = raw_after_step[0]
    for w in raw_after_step[1:]:
        expected = 0.5 * expected + 0.5 * w
    torch.testing.assert_close(kept, expected)
    assert not torch.allclose(kept, raw_after_step[-1])
    assert (tmp_path / "avg" / "last" / "average.safetensors").exists()
    plain = _run(tok, nli, tmp_path / "plain", 0.0).heads["nli"].out_proj.weight.detach()
    torch.testing.assert_close(plain, raw_after_step[-1])  # off: the raw weights, no average file
    assert not (tmp_path / "plain" / "last" / "average.safetensors").exists()


def test_a_resumed_phase_continues_the_same_average(tok, nli, tmp_path, monkeypatch):
    whole = _run(tok, nli, tmp_path / "whole", 0.7).state_dict()

    def die_at_step_3(phase, step):
        if step == 3:
            raise KeyboardInterrupt  # after the checkpoint at step 2, as a kill would leave it

    monkeypatch.setattr(train, "_fault_injection", die_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        _run(tok, nli, tmp_path / "broken", 0.7)
    monkeypatch.undo()
    resumed = _run(tok, nli, tmp_path / "broken", 0.7).state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_checkpoint_without_the_average_is_refused_and_bad_decays_are_rejected(tok, nli, tmp_path):
    _run(tok, nli, tmp_path / "plain", 0.0)
    with pytest.raises(ValueError, match="no average.safetensors"):
        _run(tok, nli, tmp_path / "plain", 0.9)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="weight_average must be in"):
            TrainConfig(weight_average=bad)
