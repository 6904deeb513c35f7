"""Word shuffle (word_shuffle.py): a sentence's words move by at most alpha places, pieces of a word together,
specials, padding and each segment's last word in place."""

import pytest
import torch

from stilts_mlflow.presets import TrainConfig
from stilts_mlflow.word_shuffle import shuffle, word_starts

BOS, PAD, EOS = 0, 1, 2
SPECIAL = torch.tensor([BOS, PAD, EOS])
# ids 10-29 open a word, 30-39 continue one; 9 is the period (opens a word)
STARTS = torch.tensor([False] * 9 + [True] * 21 + [False] * 10)


def _words(row: list[int]) -> list[list[list[int]]]:
    """Segments (between specials) as lists of words, each word its pieces."""
    segments, current = [], []
    for t in row:
        if t in (BOS, PAD, EOS):
            if current:
                segments.append(current)
            current = []
        elif STARTS[t] or not current:
            current.append([t])
        else:
            current[-1].append(t)
    return segments + ([current] if current else [])


def _pair():
    premise = [10, 31, 11, 12, 32, 33, 13, 14, 15, 16, 9]  # 9 words, two of them in several pieces, then "."
    hypothesis = [17, 18, 19, 34, 20, 9]
    return [BOS, *premise, EOS, EOS, *hypothesis, EOS, PAD, PAD]


def test_words_move_at_most_alpha_places_and_everything_else_stays():
    ids = torch.tensor([_pair()] * 300)
    out = shuffle(ids, STARTS, SPECIAL, 3.0, torch.Generator().manual_seed(0))
    fixed = torch.isin(ids, SPECIAL)
    assert torch.equal(out[fixed], ids[fixed])  # specials and padding in place
    moved = 0
    for before, after in zip(ids.tolist(), out.tolist()):
        segs_before, segs_after = _words(before), _words(after)
        assert len(segs_before) == len(segs_after) == 2
        for words, shuffled in zip(segs_before, segs_after):
            assert shuffled[-1] == words[-1] == [9]  # the period stays last
            assert sorted(shuffled) == sorted(words)  # the same words, each word's pieces together and in order
            ranks = [shuffled.index(w) for w in words]
            assert all(abs(r - i) <= 3 for i, r in enumerate(ranks))  # Lample et al.: |sigma(i) - i| <= alpha
            moved += ranks != list(range(len(words)))
    assert moved > 400  # most of the 600 segments change
    again = shuffle(ids, STARTS, SPECIAL, 3.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(shuffle(ids, STARTS, SPECIAL, 0.0, None), ids)


def test_a_small_alpha_only_swaps_neighbours_and_a_large_one_permutes_freely():
    ids = torch.tensor([_pair()] * 300)
    small = shuffle(ids, STARTS, SPECIAL, 1.0, torch.Generator().manual_seed(1))
    large = shuffle(ids, STARTS, SPECIAL, 100.0, torch.Generator().manual_seed(1))
    for before, s, big in zip(ids.tolist(), small.tolist(), large.tolist()):
        words = _words(before)[0]
        ranks = [_words(s)[0].index(w) for w in words]
        assert all(abs(r - i) <= 1 for i, r in enumerate(ranks))
    far = [
        max(abs(_words(b)[0].index(w) - i) for i, w in enumerate(_words(a)[0]))
        for a, b in zip(ids.tolist(), large.tolist())
    ]
    assert max(far) >= 6


def test_word_starts_reads_the_sentencepiece_marker(tok):
    starts = word_starts(tok)
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    assert starts.shape == (len(tok),) and starts.any() and not starts.all()
    assert all(bool(s) == p.startswith("\u2581") for s, p in zip(starts.tolist(), pieces))


def test_a_negative_shuffle_is_refused():
    with pytest.raises(ValueError, match="word_shuffle must be >= 0"):
        TrainConfig(word_shuffle=-1)


def test_a_target_phase_trains_on_shuffled_pairs_and_evaluates_on_the_originals(world, tok, tmp_path, monkeypatch):
    import stilts_mlflow.train as train
    from stilts_mlflow.features import encode
    from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
    from stilts_mlflow.presets import ModelConfig
    from stilts_mlflow.tasks.spec import TASKS
    from stilts_mlflow.tasks.synthetic import SyntheticTasks

    enc = encode(TASKS["xnli"], SyntheticTasks(world).generate("xnli", "train", "en", 24), tok, 64)
    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), len(tok))
    originals = {tuple(f["input_ids"]) for f in enc.features}
    seen = []
    real_forward = MultiTaskModel.forward

    def forward(self, head, **batch):
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        seen.append((self.training, [tuple(row[m].tolist()) for row, m in zip(ids, mask)]))
        return real_forward(self, head, **batch)

    monkeypatch.setattr(MultiTaskModel, "forward", forward)
    tc = TrainConfig(learning_rate=1e-3, batch_size=8, steps=4, eval_every=2, checkpoint_every=100, word_shuffle=4.0)
    model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
    train.train_phase(train.PhaseConfig("target", tc), model, {"xnli": enc}, {"xnli": {"en": enc}}, tok, tmp_path)
    training = [row for is_training, rows in seen if is_training for row in rows]
    evaluation = [row for is_training, rows in seen if not is_training for row in rows]
    assert len(training) == 32 and evaluation
    assert sum(row not in originals for row in training) > 16  # most training pairs shuffled ...
    assert all(sorted(row) in [sorted(o) for o in originals] for row in training)  # ... from an original pair
    assert all(row in originals for row in evaluation)  # evaluation sees the pairs as they are
