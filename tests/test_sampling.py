"""Task sampling and batching (sampling.py) and the phase budget built on them (train.py)."""

import random

import pytest

from stilts_mlflow.features import encode
from stilts_mlflow.sampling import BatchStream, choose_task, task_weights, with_mlm
from stilts_mlflow.tasks.spec import TASKS
from stilts_mlflow.tasks.synthetic import SyntheticTasks


def test_task_weights():
    sizes = {"a": 900, "b": 100}
    assert task_weights(sizes) == pytest.approx({"a": 0.9, "b": 0.1})
    assert task_weights(sizes, "temperature", temperature=2.0) == pytest.approx({"a": 0.75, "b": 0.25})
    assert task_weights(sizes, "temperature", temperature=1e9)["a"] == pytest.approx(0.5)
    assert task_weights(sizes, "capped", cap=200) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    with pytest.raises(ValueError, match="allowed: proportional, temperature, capped"):
        task_weights(sizes, "uniformish")
    with pytest.raises(ValueError, match="cap > 0"):
        task_weights(sizes, "capped")


def test_continued_mlm_takes_its_share_and_is_no_task_of_its_own(world, tok):
    from stilts_mlflow.presets import TrainConfig
    from stilts_mlflow.train import PhaseConfig, phase_weights, total_steps

    assert with_mlm({"a": 0.75, "b": 0.25}, 0.2) == pytest.approx({"a": 0.6, "b": 0.2, "mlm": 0.2})
    with pytest.raises(ValueError, match="mlm_share must be between 0 and 1"):
        with_mlm({"a": 1.0}, 1.0)
    gen = SyntheticTasks(world)
    sets = {t: encode(TASKS[t], gen.generate(t, "train", "en", n), tok, 64) for t, n in (("mnli", 30), ("qqp", 10))}
    sets["mlm"] = encode(TASKS["mlm"], gen.generate("mlm", "train", "fr", 200), tok, 64)
    cfg = PhaseConfig("intermediate", TrainConfig(steps=10, mlm_share=0.25), budget="per-task")
    assert phase_weights(cfg, sets) == pytest.approx({"mnli": 0.5625, "qqp": 0.1875, "mlm": 0.25})
    assert total_steps(cfg, sets) == 20  # per-task budget: two tasks; MLM rides along
    epochs = PhaseConfig("intermediate", TrainConfig(steps=0, epochs=1.0, batch_size=10, mlm_share=0.2))
    assert total_steps(epochs, sets) == 5  # 40 task examples = 4 batches, plus a fifth of the steps on MLM
    plain = PhaseConfig("intermediate", TrainConfig(steps=10))
    assert phase_weights(plain, {t: sets[t] for t in ("mnli", "qqp")}) == pytest.approx({"mnli": 0.75, "qqp": 0.25})
    with pytest.raises(ValueError, match="needs an 'mlm' training set"):
        phase_weights(cfg, {t: sets[t] for t in ("mnli", "qqp")})


def test_choose_task_is_a_function_of_step_and_follows_weights():
    w = {"a": 0.8, "b": 0.2}
    draws = [choose_task(w, 3, s) for s in range(4000)]
    assert draws == [choose_task(w, 3, s) for s in range(4000)]
    assert 0.77 < draws.count("a") / len(draws) < 0.83
    assert draws != [choose_task(w, 4, s) for s in range(4000)]


def test_batch_stream_buckets_lengths_covers_epochs_and_resumes():
    rng = random.Random(0)
    lengths = [rng.randint(5, 100) for _ in range(1000)]
    s = BatchStream("t", lengths, 10, seed=1)
    epoch = [s.next() for _ in range(100)]
    assert sorted(i for b in epoch for i in b) == list(range(1000))  # one epoch = every example once
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch) / 100
    assert spread < 15  # buckets: similar lengths per batch (random batches would spread ~80)
    nxt = s.next()
    assert s.epoch == 1 and nxt != epoch[0]
    resumed = BatchStream("t", lengths, 10, seed=1)
    resumed.load(s.state())
    assert [resumed.next() for _ in range(30)] == [s.next() for _ in range(30)]
