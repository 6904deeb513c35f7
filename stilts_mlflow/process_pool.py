"""Worker processes for tracked work beside this process: a study's pipelines, its ONNX exports.

Spawned, not forked (no copied torch or MLflow state), each with its share of the cores as torch threads,
logging to this process's tracking store and experiment, and dying with it (Linux: PR_SET_PDEATHSIG), so a
killed study leaves no orphan work on; its unfinished runs resume by key on the next run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

import mlflow


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def threads_each(workers: int) -> int:
    """Torch threads per worker when `workers` share this machine's cores."""
    return max(1, cores() // workers)


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a killed study's workers finish their task, then exit
        pass


def _init_worker(tracking_uri: str, experiment_id: str, threads: int, log_level: int) -> None:
    _die_with_parent()
    os.environ.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_EXPERIMENT_ID=experiment_id,
        STILTS_NO_PROGRESS="1",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s [worker {os.getpid()}] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()


def tracked_pool(workers: int, threads: int, experiment_id: str) -> ProcessPoolExecutor:
    """`workers` spawned processes of `threads` torch threads each, tracking into `experiment_id` of this
    process's tracking store."""
    return ProcessPoolExecutor(
        max_workers=workers,
        initializer=_init_worker,
        initargs=(mlflow.get_tracking_uri(), experiment_id, threads, logging.getLogger().getEffectiveLevel()),
        mp_context=multiprocessing.get_context("spawn"),
    )
