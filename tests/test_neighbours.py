"""Cross-lingual neighbour swaps (neighbours.py): each English token's nearest neighbour among one other
language's tokens in the encoder's embedding space, swapped in for a share of each pair's word types."""

import pytest
import torch

from stilts_mlflow.features import Encoded
from stilts_mlflow.mlm import language_vocab
from stilts_mlflow.neighbours import neighbour_table, swap
from stilts_mlflow.presets import TrainConfig
from stilts_mlflow.tasks import get_task

VOCAB, MASK = 40, 39
EN, FR, DE = list(range(4, 10)), list(range(10, 16)), list(range(16, 22))  # word i of each language: one sense
SHARED = [30, 31]  # names, digits


def _vocab():
    def corpus(words):
        return [Encoded(get_task("mlm"), [{"input_ids": [0, *words, *SHARED, 2], "length": 10}], ())]

    return language_vocab({"en": corpus(EN), "fr": corpus(FR), "de": corpus(DE)}, VOCAB, MASK)


def _weights():
    torch.manual_seed(0)
    weight = torch.randn(VOCAB, 16)
    for i in range(6):  # fr and de words: their English word's vector, a little off
        weight[FR[i]] = weight[EN[i]] + 0.1 * torch.randn(16)
        weight[DE[i]] = weight[EN[i]] + 0.1 * torch.randn(16)
    return weight


def test_each_english_word_maps_to_its_counterpart_and_shared_or_special_tokens_to_themselves():
    table = neighbour_table(_weights(), _vocab(), MASK)
    assert table.shape == (2, VOCAB)  # de and fr, English left out
    assert table[0, EN].tolist() == DE and table[1, EN].tolist() == FR
    for row in table:
        assert row[SHARED + [0, 1, 2, 3, MASK]].tolist() == SHARED + [0, 1, 2, 3, MASK]
        assert row[FR + DE].tolist() == FR + DE  # only English tokens are ever swapped


def test_swap_changes_the_asked_share_of_word_types_consistently_within_a_pair():
    table = neighbour_table(_weights(), _vocab(), MASK)
    ids = torch.tensor([[0, *EN, 2, 2, *EN, 30, 2]] * 400)
    out = swap(ids, table, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, [0, 7, 8, 15, 16]], ids[:, [0, 7, 8, 15, 16]])  # specials and the name stay
    premise, hypothesis = out[:, 1:7], out[:, 9:15]
    assert torch.equal(premise, hypothesis)  # a word swapped in the premise is swapped in the hypothesis too
    changed = premise != ids[:, 1:7]
    assert changed.float().mean().item() == pytest.approx(0.3, abs=0.03)
    for row, mask in zip(premise, changed):  # one language per pair, each word its own counterpart
        swapped = set(row[mask].tolist())
        assert swapped <= set(FR) or swapped <= set(DE)
    again = swap(ids, table, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(swap(ids, table, 0.0, None), ids)


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="neighbour_swap must be in"):
        TrainConfig(neighbour_swap=1.5)


def test_a_target_phase_trains_on_swapped_pairs_and_evaluates_on_the_originals(world, tok, tmp_path, monkeypatch):
    import stilts_mlflow.train as train
    from stilts_mlflow.features import encode
    from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
    from stilts_mlflow.presets import ModelConfig
    from stilts_mlflow.tasks.spec import TASKS
    from stilts_mlflow.tasks.synthetic import SyntheticTasks

    enc = encode(TASKS["xnli"], SyntheticTasks(world).generate("xnli", "train", "en", 24), tok, 64)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    foreign = len(tok) - 2  # every content token becomes this one
    table = torch.arange(len(tok)).repeat(2, 1)
    table[:, 4 : len(tok) - 1] = foreign
    seen = []
    real_forward = MultiTaskModel.forward

    def forward(self, head, **batch):
        seen.append((self.training, batch["input_ids"].clone()))
        return real_forward(self, head, **batch)

    monkeypatch.setattr(MultiTaskModel, "forward", forward)
    tc = TrainConfig(learning_rate=1e-3, batch_size=8, steps=4, eval_every=2, checkpoint_every=100, neighbour_swap=1.0)
    model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
    phase = train.PhaseConfig("target", tc)
    with pytest.raises(ValueError, match="needs a neighbour table"):
        train.train_phase(phase, model, {"xnli": enc}, {"xnli": {"en": enc}}, tok, tmp_path / "none", progress=False)
    seen.clear()
    train.train_phase(
        phase, model, {"xnli": enc}, {"xnli": {"en": enc}}, tok, tmp_path / "swap", progress=False, neighbours=table
    )
    training = [ids for is_training, ids in seen if is_training]
    evaluation = [ids for is_training, ids in seen if not is_training]
    assert len(training) == 4 and evaluation
    for ids in training:  # content tokens all swapped; <s>, </s> and padding kept
        assert set(ids[ids > 3].tolist()) == {foreign}
    assert all((ids[ids > 3] != foreign).any() for ids in evaluation)


def test_swaps_can_start_once_dev_passes_a_score_and_then_restart_early_stopping(world, tok, tmp_path, monkeypatch):
    """`augment_from`: English-only steps until the best dev score reaches it, swapped steps after; the
    weights kept come from the swap stage, the phase no longer gives up, and a resumed run swaps alike."""
    import stilts_mlflow.train as train
    from stilts_mlflow.features import encode
    from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
    from stilts_mlflow.presets import ModelConfig
    from stilts_mlflow.tasks.spec import TASKS
    from stilts_mlflow.tasks.synthetic import SyntheticTasks

    enc = encode(TASKS["xnli"], SyntheticTasks(world).generate("xnli", "train", "en", 24), tok, 64)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    foreign = len(tok) - 2
    table = torch.arange(len(tok)).repeat(2, 1)
    table[:, 4 : len(tok) - 1] = foreign
    scores = {2: 0.5, 4: 0.8, 6: 0.6, 8: 0.7}  # dev scores by step: swaps start after step 4's 0.8
    monkeypatch.setattr(train, "selection_score", lambda phase, metrics, select: scores[len(seen_evals) * 2])
    seen_evals, swapped = [], []
    real_forward, real_evaluate = MultiTaskModel.forward, train._evaluate

    def forward(self, head, **batch):
        if self.training:
            ids = batch["input_ids"]
            swapped.append(bool((ids == foreign).any()))
        return real_forward(self, head, **batch)

    def evaluate(loop, cfg, dev_sets, tokenizer, step, work_dir, on_metrics):
        seen_evals.append(step)
        return real_evaluate(loop, cfg, dev_sets, tokenizer, step, work_dir, on_metrics)

    monkeypatch.setattr(MultiTaskModel, "forward", forward)
    monkeypatch.setattr(train, "_evaluate", evaluate)
    tc = TrainConfig(
        learning_rate=1e-3,
        batch_size=8,
        steps=8,
        eval_every=2,
        checkpoint_every=2,
        stop_above=0.75,
        restarts=1,
        restart_at=6,  # best 0.6 at step 6 would give up, were it not the swap stage
        neighbour_swap=1.0,
        augment_from=0.75,
    )
    phase = train.PhaseConfig("target", tc)
    sets = ({"xnli": enc}, {"xnli": {"en": enc}}, tok)

    def run(work, **kw):
        torch.manual_seed(0)
        model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
        return model, train.train_phase(phase, model, *sets, tmp_path / work, progress=False, neighbours=table, **kw)

    model, result = run("whole")
    assert swapped == [False] * 4 + [True] * 4
    assert result.steps == 8 and (result.best_step, result.best_score) == (8, 0.7)  # not step 4's English-only 0.8

    # killed after step 6's checkpoint, then resumed: the swap stage goes on, and ends on the same weights
    seen_evals.clear(), swapped.clear()
    monkeypatch.setattr(
        train, "_fault_injection", lambda phase, step: (_ for _ in ()).throw(KeyboardInterrupt) if step == 7 else None
    )
    with pytest.raises(KeyboardInterrupt):
        run("killed")
    monkeypatch.setattr(train, "_fault_injection", lambda phase, step: None)
    seen_evals[:] = [2, 4, 6]
    swapped.clear()
    resumed, again = run("killed")
    assert swapped == [True, True]
    assert (again.steps, again.best_step, again.best_score) == (8, 8, 0.7)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
