"""Checkpoints (checkpoint.py): complete and atomic."""

import random

import torch

from stilts_mlflow import checkpoint
from helpers import tiny_model


def test_checkpoint_roundtrip_is_complete_and_atomic(tmp_path):
    model, opt, sched = tiny_model()
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
    fresh, opt2, sched2 = tiny_model()
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
