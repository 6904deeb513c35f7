"""Features (features.py): span, tagging, multiple-choice encoding and MLM masking; span scoring (evaluate.py)."""

import pytest
import torch

from stilts_mlflow.evaluate import best_span, span_f1
from stilts_mlflow.features import collate, encode, mask_tokens
from stilts_mlflow.tasks.spec import TASKS
from stilts_mlflow.tasks.synthetic import SyntheticTasks


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
