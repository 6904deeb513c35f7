"""Several processes training one phase (`torchrun` / `accelerate launch`, one process per GPU).

Only rank 0 tracks: the other ranks point MLflow at a private throwaway store (so the same code runs in
every process without touching the team's runs), skip the phase lock, and follow rank 0's decisions —
reuse a finished phase or train it — which rank 0 broadcasts. Training itself is data parallel through
accelerate (train.py); rank 0 writes checkpoints and outputs, every rank reads them.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import mlflow


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _state():
    import torch
    from accelerate import PartialState

    # Joins the process group torchrun / accelerate launch set up. `cpu` as train.py's Accelerator has it:
    # without it, the first PartialState on a machine without CUDA is DistributedType.NO in every process,
    # and the Accelerator created after it inherits that (each rank then trains alone, as its own rank 0).
    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        _state()
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (pickled through the process group)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    _state()
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def private_tracking() -> None:
    """Non-zero ranks: a store of their own, and no run or experiment chosen by `mlflow run`."""
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        os.environ.pop(name, None)
    uri = f"sqlite:///{tempfile.mkdtemp(prefix=f'stilts-rank{rank()}-')}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
