"""Complete training checkpoints, written atomically.

A checkpoint directory holds everything a resumed run needs to continue exactly where it stopped:
model weights (safetensors), optimizer and scheduler state, RNG states (python, torch, the masking
generator), sampler positions, the step and the training history (trainer_state.json). It is written
into a temporary sibling and renamed into place, so a kill at any moment leaves either the previous
checkpoint or the new one, never half of one. Optimizer/scheduler/RNG files are our own and are
read back with `torch.load(weights_only=True)`: no arbitrary unpickling.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

STATE = "trainer_state.json"


def _python_rng() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def save(
    path: Path,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    generator: torch.Generator,
    state: dict[str, Any],
    extra: dict[str, torch.nn.Module] | None = None,
) -> Path:
    """`extra`: further modules whose weights belong to the run (a weight average), each `<name>.safetensors`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        for name, module in (extra or {}).items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(
            {"torch": torch.get_rng_state(), "generator": generator.get_state(), "python": _python_rng()},
            tmp / "rng.pt",
        )
        (tmp / STATE).write_text(json.dumps(state, indent=1, sort_keys=True))
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def find(path: Path) -> Path | None:
    """The checkpoint at `path`, or the previous one if a kill hit between the two renames."""
    path = Path(path)
    for candidate in (path, path.with_name(f".{path.name}.old")):
        if (candidate / STATE).exists():
            return candidate
    return None


def load(
    path: Path,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    generator: torch.Generator,
    extra: dict[str, torch.nn.Module] | None = None,
) -> dict[str, Any]:
    load_model(model, str(path / "model.safetensors"))
    for name, module in (extra or {}).items():
        if not (path / f"{name}.safetensors").exists():
            raise ValueError(
                f"checkpoint {path} has no {name}.safetensors, which this run keeps; it was written by a run with another config"
            )
        load_model(module, str(path / f"{name}.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    return json.loads((path / STATE).read_text())


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE).read_text())
