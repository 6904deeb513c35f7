"""The in-process backend with `max_parallel` > 1: a pool of worker processes, each running one child pipeline
after another.

A worker imports torch, transformers and MLflow once and keeps its `Context` (data, tokenizer, encoded splits:
context.context_for) for every pipeline it runs, where a project-backend child (`local`) pays both again for each
pipeline. Each child is an MLflow run of its own under the study's `scaling` run (`mlflow.parentRunId`), cached
and resumed by its `stilts.key` like any other. Workers die with the study (Linux: PR_SET_PDEATHSIG), so a
killed study leaves no orphan training on; its unfinished runs resume on the next run of the study.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

import mlflow

from stilts_mlflow.options import Options
from stilts_mlflow.process_pool import tracked_pool

log = logging.getLogger(__name__)


def _run(opts: Options, parent_run_id: str) -> dict[str, Any]:
    from stilts_mlflow import tracking
    from stilts_mlflow.scaling.children import run_child

    tracking.setup()
    row, _ = run_child(opts, parent_run_id)
    return row


def run_pooled(
    children: list[tuple[int, Options]],
    max_parallel: int,
    threads: int,
    parent_run_id: str,
    on_done: Callable[[int, dict[str, Any]], None],
) -> None:
    """Run `children` (index, options) on `max_parallel` worker processes of `threads` torch threads each,
    handing each finished child's row to `on_done`. A failed child stops the study once the running ones end
    (their results are kept: a rerun continues from them)."""
    experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    failed: list[str] = []
    workers = max(1, min(max_parallel, len(children)))
    with tracked_pool(workers, threads, experiment_id) as pool:
        futures: dict[Future, int] = {pool.submit(_run, opts, parent_run_id): index for index, opts in children}
        log.info("%d pipelines on %d worker processes, %d torch thread(s) each", len(children), workers, threads)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures[future]
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    on_done(index, future.result())
                    continue
                failed.append(f"pipeline {index + 1} failed: {type(error).__name__}: {error}")
                log.error("%s", failed[-1])
                for other in pending:
                    other.cancel()  # the ones not started yet; running ones end normally
    if failed:
        raise RuntimeError("; ".join(failed) + ". Finished pipelines are kept: rerun the study to continue.")
