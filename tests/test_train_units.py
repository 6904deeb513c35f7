"""Unit tests of the training machinery: samplers, batching, features, checkpoints, phase options."""

import random

import pytest
import torch

from stilts_mlflow import checkpoint
from stilts_mlflow.evaluate import best_span, span_f1
from stilts_mlflow.features import collate, encode, mask_tokens
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.phases import Options
from stilts_mlflow.presets import ModelConfig
from stilts_mlflow.sampling import BatchStream, choose_task, task_weights, with_mlm
from stilts_mlflow.tasks.spec import TASKS
from stilts_mlflow.tokenizer import load_tokenizer, train_tokenizer
from stilts_mlflow.tasks.synthetic import SyntheticTasks
from stilts_mlflow.world import XNLI_LANGUAGES


@pytest.fixture(scope="module")
def tok(world, tmp_path_factory):
    tasks = SyntheticTasks(world)
    texts = [r["text"] for lang in XNLI_LANGUAGES for r in tasks.generate("mlm", "train", lang, 40)]
    return load_tokenizer(train_tokenizer(texts, 1500, tmp_path_factory.mktemp("tok"), alphabet=world.alphabet()))


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


def test_features_span_tagging_choice_and_masking(world, tok):
    tasks = SyntheticTasks(world)
    squad = tasks.generate("squad", "train", "en", 20)
    enc = encode(TASKS["squad"], squad, tok, 128)
    for rec, f in zip(squad, enc.features):
        answer = tok.decode(f["input_ids"][f["start_positions"] : f["end_positions"] + 1]).strip()
        assert f["start_positions"] > 0 and answer == rec["answers"]["text"][0]
    v2 = [r for r in tasks.generate("squad_v2", "train", "en", 30) if not r["answers"]["text"]]
    assert all(
        f["start_positions"] == f["end_positions"] == 0 for f in encode(TASKS["squad_v2"], v2, tok, 128).features
    )

    ccg = tasks.generate("ccg", "train", "en", 5)
    enc = encode(TASKS["ccg"], ccg, tok, 128, labels=tuple(sorted({t for r in ccg for t in r["tags"]})))
    for rec, f in zip(ccg, enc.features):
        assert sum(x != -100 for x in f["labels"]) == len(rec["tags"])  # one label per word
        assert [enc.labels[x] for x in f["labels"] if x != -100] == rec["tags"]

    hs = tasks.generate("hellaswag", "train", "en", 4)
    batch = collate("multiple_choice", encode(TASKS["hellaswag"], hs, tok, 128).features, tok.pad_token_id)
    assert batch["input_ids"].shape[:2] == (4, 4) and batch["labels"].tolist() == [r["label"] for r in hs]

    ids = torch.randint(4, len(tok) - 1, (64, 50))
    masked, labels = mask_tokens(ids, tok.mask_token_id, len(tok), 0.15, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert 0.12 < chosen.float().mean() < 0.18
    assert (labels[chosen] == ids[chosen]).all() and (masked[~chosen] == ids[~chosen]).all()
    assert 0.75 < (masked[chosen] == tok.mask_token_id).float().mean() < 0.85


def test_best_span_and_f1():
    start = torch.tensor([0.0, 5.0, 1.0, 0.0])
    end = torch.tensor([0.0, 0.0, 1.0, 4.0])
    assert best_span(start, end, torch.ones(4)) == (1, 3)
    assert best_span(start + torch.tensor([20.0, 0, 0, 0]), end, torch.ones(4)) == (0, 0)  # null answer wins
    assert span_f1((1, 3), (1, 3)) == 1.0 and span_f1((0, 0), (0, 0)) == 1.0 and span_f1((0, 0), (1, 2)) == 0.0
    assert span_f1((1, 2), (2, 3)) == pytest.approx(0.5)


def _tiny_model():
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), 50)
    model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, opt, sched


def test_checkpoint_roundtrip_is_complete_and_atomic(tmp_path):
    model, opt, sched = _tiny_model()
    model("nli", torch.randint(4, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long), torch.tensor([0, 1]))[0].backward()
    opt.step()
    sched.step()
    random.seed(11)
    torch.manual_seed(12)
    gen = torch.Generator().manual_seed(5)
    path = checkpoint.save(tmp_path / "one", model, opt, sched, gen, {"step": 1})
    expected = (random.random(), torch.rand(1).item(), torch.rand(1, generator=gen).item())

    random.seed(0)
    torch.manual_seed(0)
    fresh, opt2, sched2 = _tiny_model()
    gen2 = torch.Generator()
    assert checkpoint.load(path, fresh, opt2, sched2, gen2) == {"step": 1}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert sched2.last_epoch == sched.last_epoch == 1
    assert (random.random(), torch.rand(1).item(), torch.rand(1, generator=gen2).item()) == expected

    checkpoint.save(tmp_path / "one", model, opt, sched, gen, {"step": 2})  # replaces it, no leftovers
    assert checkpoint.read_state(path)["step"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["one"]
    # a kill between the two renames leaves only the previous checkpoint, as .one.old: still found
    (tmp_path / "one").rename(tmp_path / ".one.old")
    assert checkpoint.find(tmp_path / "one") == tmp_path / ".one.old"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"preset": "huge"}, "unknown preset 'huge'; allowed: smoke, tiny, xlmr-base, xlmr-large"),
        ({"tasks": ("mnli", "boolq")}, "unknown intermediate task(s) boolq; allowed: anli, mnli"),
        ({"sampler": "uniform"}, "sampler must be one of proportional, temperature, capped"),
        ({"budget": "all"}, "budget must be one of fixed, per-task"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"sampler": "capped"}, "sampler=capped needs cap > 0"),
    ],
)
def test_options_reject_bad_values(bad, message):
    with pytest.raises(ValueError) as err:
        Options(**bad)
    assert message in str(err.value)


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
    model, _, _ = _tiny_model()
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
