"""The thin MLflow layer: store, experiment, runs (nested, resumable), cache lookup, inputs (checkpoints:
checkpoint_store.py).

- Tracking URI: `MLFLOW_TRACKING_URI` if set, else `sqlite:///mlflow.db` in the working directory
  (tracking and registry in one file; `mlflow ui` there shows everything).
- Experiment `stilts-xnli` (or `MLFLOW_EXPERIMENT_NAME` / the one `mlflow run` chose).
- A phase run is tagged `stilts.phase` and `stilts.key` (hash of its resolved config and its inputs'
  keys). A FINISHED run with the same key is reused instead of retrained; an unfinished one (killed,
  failed) is resumed: same run id, training continues from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)
EXPERIMENT = "stilts-xnli"
TAG = "stilts."
INPUT_RETRIES = 5  # dataset inputs: attempts when another process inserts the same dataset at once


def setup(experiment: str | None = None) -> str:
    from stilts_mlflow import distributed

    if not distributed.is_main():
        distributed.private_tracking()  # only rank 0 of a multi-process launch tracks
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(f"sqlite:///{Path('mlflow.db').resolve()}")
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    if os.environ.get("MLFLOW_EXPERIMENT_ID") and not experiment:
        return os.environ["MLFLOW_EXPERIMENT_ID"]  # chosen by `mlflow run`
    return mlflow.set_experiment(name).experiment_id


def make_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def find_run(key: str, status: str | None = "FINISHED"):
    """Newest run tagged with this key (and status), across the active experiment."""
    flt = f"tags.`{TAG}key` = '{key}'"
    if status:
        flt += f" and attributes.status = '{status}'"
    exp = mlflow.get_experiment_by_name(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    ids = [exp.experiment_id] if exp else []
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        ids.append(os.environ["MLFLOW_EXPERIMENT_ID"])
    if not ids:
        return None
    runs = mlflow.search_runs(
        experiment_ids=list(set(ids)),
        filter_string=flt,
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None


def find_resumable(key: str):
    for status in ("RUNNING", "FAILED", "KILLED"):
        run = find_run(key, status)
        if run is not None:
            return run
    return None


def thread_tag() -> dict[str, str]:
    """How many torch threads this run trains on: context for its timings (and, float sums being summed
    in another order, for its last digits)."""
    return {f"{TAG}torch_threads": str(torch.get_num_threads())}


@contextmanager
def start(
    name: str,
    tags: dict[str, Any],
    params: dict[str, Any] | None = None,
    key: str | None = None,
    nested: bool = True,
    parent_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """A run for one phase/command; resumes an unfinished run with the same key. Its parent: the active run
    (`nested`), or the run `parent_id` names (another process's: a study's worker pool)."""
    previous = find_resumable(key) if key else None
    if parent_id is None and mlflow.active_run() is not None:
        parent_id = mlflow.active_run().info.run_id
    if previous is not None:
        log.info("resuming run %s (%s)", previous.info.run_id, name)
        ctx = mlflow.start_run(run_id=previous.info.run_id, nested=nested)
    else:
        ctx = mlflow.start_run(run_name=name, nested=nested, parent_run_id=None if nested else parent_id)
    with ctx as run:
        if previous is not None and parent_id is not None:
            _adopt(previous, parent_id)
        mlflow.set_tags(
            {f"{TAG}{k}": str(v) for k, v in tags.items()} | ({f"{TAG}key": key} if key else {}) | thread_tag()
        )
        if params and previous is None:
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        yield run


def _adopt(run, parent_id: str) -> None:
    """A resumed phase moves under the parent that resumed it; a parent killed mid-run is marked KILLED."""
    client = MlflowClient()
    old = run.data.tags.get("mlflow.parentRunId")
    if not old or old == parent_id:
        return
    client.set_tag(run.info.run_id, "mlflow.parentRunId", parent_id)
    client.set_tag(run.info.run_id, f"{TAG}resumed_from_parent", old)
    if client.get_run(old).info.status == "RUNNING":
        client.set_terminated(old, "KILLED")


# how a unique-key violation reads once a tracking server has turned it into a REST error (BAD_REQUEST text):
# PostgreSQL's and SQLite's wording, and SQLAlchemy's code for IntegrityError
_DUPLICATE_MARKERS = (
    "UniqueViolation",
    "duplicate key value",
    "UNIQUE constraint failed",
    "sqlalche.me/e/21/gkpj",
    "sqlalche.me/e/20/gkpj",
)


def _duplicate_insert(e: MlflowException) -> bool:
    """Whether `e` is a unique-key violation from the store: raised here (local store) or by a tracking server."""
    if isinstance(e.__cause__, IntegrityError):
        return True
    return isinstance(e, RestException) and any(m in e.message for m in _DUPLICATE_MARKERS)


def log_inputs(files: dict[str, Path], context: str) -> None:
    """One dataset input per (task, split, lang) file of the materialized data set."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    datasets = []
    for name, path in sorted(files.items()):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if Path(path).is_file() else None
        datasets.append(MetaDataset(LocalArtifactDatasetSource(str(Path(path).resolve())), name=name, digest=digest))
    if not datasets:
        return
    # MLflow's SQL store looks the datasets up, then inserts the missing ones: two processes logging the same
    # new dataset at once (parallel study children) make the later insert fail on the unique key and roll
    # back. Retried, the lookup finds the other process's row and only links it to this run.
    for attempt in range(INPUT_RETRIES):
        try:
            mlflow.log_inputs(datasets=datasets, contexts=[context] * len(datasets), tags_list=[None] * len(datasets))
            return
        except MlflowException as e:
            if not _duplicate_insert(e) or attempt == INPUT_RETRIES - 1:
                raise
            log.debug("dataset inputs raced another process (%s); retrying", e)
            time.sleep(0.2 * (attempt + 1))


def in_run() -> bool:
    return mlflow.active_run() is not None


def set_tag(name: str, value: str) -> None:
    """`stilts.<name>` on the active run."""
    mlflow.set_tag(f"{TAG}{name}", value)


def log_outputs(
    tables: dict[str, Any] | None = None, dicts: dict[str, Any] | None = None, figures: dict[str, Any] | None = None
) -> None:
    """Result files of the active run by artifact name: tables (column dicts), JSON documents, figures."""
    for name, table in (tables or {}).items():
        mlflow.log_table(table, name)
    for name, doc in (dicts or {}).items():
        mlflow.log_dict(doc, name)
    for name, fig in (figures or {}).items():
        mlflow.log_figure(fig, name)


def metric_name(key: str) -> str:
    """MLflow metric names: keep '/', turn '.' into '_' (xnli/accuracy.fr -> xnli/accuracy_fr)."""
    return key.replace(".", "_")


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({metric_name(k): float(v) for k, v in metrics.items()}, step=step)
