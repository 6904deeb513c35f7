"""The `ray` backend: a study's unfinished child pipelines as Ray tasks on a Ray cluster.

The study (the driver) connects to the cluster at the backend config's `address`, else `RAY_ADDRESS`, else
Ray's `auto` (the cluster `ray start` made on this machine); resolves the shared encoder once
(orchestrate.py); then submits each unfinished pipeline as a task asking for the preset's resources
(the preset's `resources`, overridable in the backend config), at most `max_parallel` at once. A task runs the same
child as the worker pool (children.run_child), reporting to the tracking server, so children are cached
by key and laid out as on every other backend, and their runs are tagged with the node that ran them
(`stilts.ray_node_id`, `stilts.ray_node_ip`; `stilts.ray_previous_node_id` when a retry moved it).

Failures: a task whose worker process or node dies is retried by Ray (`max_retries`, default 2); the retry
resumes the child's runs, each phase from its newest checkpoint, taken from the artifact store when its
node has no copy (checkpoint_store.py). An exception inside a pipeline is not retried: it stops the study
once the running children end, as on the other backends. A request that no node of the cluster can hold
fails after `schedule_timeout_s` with what was asked and what the nodes have, instead of waiting forever.
If the driver dies, Ray ends its tasks; finished children are on the tracking server, and the study's
rerun reuses them and resumes the rest.

Backend config (JSON, every key optional; deploy/ray/backend.json):
    address             Ray cluster address: host:port of the head's GCS, "auto", or ray://host:port
    cpus, gpus, memory_gb, resources (custom, e.g. {"worker_node": 1})   one pipeline's request
    max_retries         retries of a pipeline whose worker or node died (default 2)
    schedule_timeout_s  how long a request no node can hold may wait for one (default 300)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow

from stilts_mlflow.options import Options
from stilts_mlflow.presets import Resources, get_preset

log = logging.getLogger(__name__)
SERVER_SCHEMES = ("http", "https", "databricks")
CONFIG_KEYS = ("address", "cpus", "gpus", "memory_gb", "resources", "max_retries", "schedule_timeout_s")
# where the tracking server's tags and the workers' environment come from (the rest of a node's environment,
# STILTS_CACHE included, is the node's own)
CHILD_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_EXPERIMENT_NAME",
)


@dataclass(frozen=True)
class RayRequest:
    """One pipeline's resource request, in Ray's terms."""

    base: Resources
    custom: dict[str, float] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        return {
            "num_cpus": self.base.cpus,
            "num_gpus": self.base.gpus,
            "memory": int(self.base.memory_gb * 2**30),
            "resources": dict(self.custom),
        }

    def needs(self) -> dict[str, float]:
        """The request as Ray node resources (memory in bytes)."""
        return {"CPU": self.base.cpus, "GPU": self.base.gpus, "memory": self.base.memory_gb * 2**30, **self.custom}

    def fits(self, node: dict[str, float]) -> bool:
        return all(node.get(name, 0.0) >= amount for name, amount in self.needs().items() if amount > 0)

    def describe(self) -> str:
        return self.base.describe() + "".join(f", {v:g} {k}" for k, v in sorted(self.custom.items()))


@dataclass(frozen=True)
class RaySettings:
    address: str = "auto"
    request: RayRequest = field(default_factory=lambda: RayRequest(Resources()))
    max_retries: int = 2
    schedule_timeout_s: float = 300.0

    @classmethod
    def load(cls, preset: str, path: str | None = None) -> RaySettings:
        """The preset's request and the defaults, overridden by the backend config file `path`."""
        cfg: dict[str, Any] = {}
        if path:
            try:
                cfg = json.loads(Path(path).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"backend config {path}: not a readable JSON object ({exc})") from None
            unknown = sorted(set(cfg) - set(CONFIG_KEYS)) if isinstance(cfg, dict) else ["(not an object)"]
            if unknown:
                raise ValueError(
                    f"backend config {path}: unknown key(s) {', '.join(unknown)} for the ray backend; "
                    f"allowed: {', '.join(CONFIG_KEYS)}"
                )
        base = get_preset(preset).resources
        try:
            base = replace(base, **{k: float(cfg[k]) for k in ("cpus", "gpus", "memory_gb") if k in cfg})
            custom = {str(k): float(v) for k, v in (cfg.get("resources") or {}).items()}
            settings = cls(
                address=str(cfg.get("address") or os.environ.get("RAY_ADDRESS") or "auto"),
                request=RayRequest(base, custom),
                max_retries=int(cfg.get("max_retries", 2)),
                schedule_timeout_s=float(cfg.get("schedule_timeout_s", 300.0)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"backend config {path}: {exc}") from None
        if settings.max_retries < 0 or settings.schedule_timeout_s <= 0:
            raise ValueError(f"backend config {path}: max_retries must be >= 0 and schedule_timeout_s > 0")
        return settings


def check_tracking_uri() -> str:
    """The tracking server the children report to; a store on this machine's disk is refused."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.split(":", 1)[0] not in SERVER_SCHEMES:
        raise ValueError(
            f"the ray backend's children run on other machines and report to a tracking server: set "
            f"MLFLOW_TRACKING_URI to one (http://..., scripts/tracking_server.sh, deploy/compose.yaml); "
            f"got {uri or 'none (a local sqlite store)'}"
        )
    return uri


def _ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'stilts-mlflow[cluster]'") from None
    return ray


def _listening(address: str, timeout: float = 3.0) -> str | None:
    """Why nothing answers at host:port (None: something does, or the address is not host:port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def connect(settings: RaySettings) -> None:
    """This process as a driver of the cluster at `settings.address` (once per process)."""
    ray = _ray()
    if ray.is_initialized():
        return
    why = _listening(settings.address)
    if why:
        raise ValueError(
            f"no Ray cluster at {settings.address} ({why}): start one (ray start --head) or point "
            "RAY_ADDRESS / the backend config's address at it"
        )
    try:
        ray.init(address=settings.address, namespace="stilts", log_to_driver=True, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ray.exceptions.RpcError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"no Ray cluster at {settings.address}: {first}") from None
    log.info("connected to the Ray cluster at %s: %s", settings.address, describe_nodes())


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in _ray().nodes() if n.get("Alive")]


def describe_nodes(nodes: list[dict[str, Any]] | None = None) -> str:
    nodes = _alive_nodes() if nodes is None else nodes
    if not nodes:
        return "no live nodes"
    parts = []
    for n in nodes:
        r = n.get("Resources", {})
        custom = "".join(
            f", {v:g} {k}"
            for k, v in sorted(r.items())
            if k not in ("CPU", "GPU", "memory")
            and not k.startswith(("node:", "object_store_memory", "accelerator_type"))
        )
        parts.append(
            f"node {n['NodeID'][:8]} ({r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU, "
            f"{r.get('memory', 0) / 2**30:.1f} GiB memory{custom})"
        )
    return "; ".join(parts)


class Feasibility:
    """Whether some live node can hold the request; `check` raises once none could for `timeout_s`."""

    def __init__(self, settings: RaySettings):
        self.settings = settings
        self.since: float | None = None

    def check(self) -> bool:
        nodes = _alive_nodes()
        if any(self.settings.request.fits(n.get("Resources", {})) for n in nodes):
            self.since = None
            return True
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since >= self.settings.schedule_timeout_s:
            raise ValueError(
                f"no node of the Ray cluster at {self.settings.address} can run a pipeline after "
                f"{self.settings.schedule_timeout_s:g} s: asked for {self.settings.request.describe()}; "
                f"the cluster has {describe_nodes(nodes)}"
            )
        return False

    def wait(self, poll_s: float = 1.0) -> None:
        if not self.check():
            log.warning(
                "no node of the Ray cluster can hold %s yet; waiting for one (at most %g s)",
                self.settings.request.describe(),
                self.settings.schedule_timeout_s,
            )
        while not self.check():
            time.sleep(poll_s)


def preflight(preset: str, backend_config: str | None) -> RaySettings:
    """Everything a user can get wrong, checked before the study starts: the tracking server, the cluster's
    address, and a node that can hold one pipeline."""
    settings = RaySettings.load(preset, backend_config)
    check_tracking_uri()
    connect(settings)
    Feasibility(settings).wait()
    return settings


# --- on a node --------------------------------------------------------------------------------------------
_CONFIGURED: set[int] = set()


def _configure_worker(log_level: int) -> None:
    if os.getpid() in _CONFIGURED:
        return
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    _CONFIGURED.add(os.getpid())


def run_child_on_node(
    opts: Options, parent_run_id: str, env: dict[str, str], threads: int, log_level: int
) -> dict[str, Any]:
    """One child pipeline, run in a Ray worker on whichever node Ray chose (the task's body)."""
    import ray
    import torch

    for name in CHILD_ENV:  # the study's tracking server and experiment, whatever the node's environment says
        os.environ.pop(name, None)
    os.environ.update(env)
    _configure_worker(log_level)
    torch.set_num_threads(threads)
    from stilts_mlflow import tracking
    from stilts_mlflow.scaling.children import child_key, run_child

    tracking.setup()
    node = ray.get_runtime_context().get_node_id()
    tags = {"ray_node_id": node, "ray_node_ip": ray.util.get_node_ip_address()}
    previous = tracking.find_resumable(child_key(opts))
    if previous is not None and previous.data.tags.get("stilts.ray_node_id", node) != node:
        tags["ray_previous_node_id"] = previous.data.tags["stilts.ray_node_id"]
        log.info("pipeline moved from node %s to node %s: resuming it", tags["ray_previous_node_id"][:8], node[:8])
    row, _ = run_child(opts, parent_run_id, extra_tags=tags)
    return row


# --- the driver -------------------------------------------------------------------------------------------
def _failure(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def run_on_ray(
    children: list[tuple[int, Options]],
    backend_config: str | None,
    max_parallel: int,
    parent_run_id: str,
    on_done: Callable[[int, dict[str, Any]], None],
    poll_s: float = 1.0,
) -> None:
    """Run `children` (index, options) as Ray tasks, at most `max_parallel` at once, handing each finished
    child's row to `on_done`. A failed child stops the study once the running ones end (finished ones are
    kept: a rerun continues from them)."""
    if not children:
        return
    ray = _ray()
    settings = preflight(children[0][1].preset, backend_config)
    experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    env = {name: os.environ[name] for name in CHILD_ENV if os.environ.get(name)}
    env.update(MLFLOW_EXPERIMENT_ID=experiment_id, STILTS_NO_PROGRESS="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    threads = max(1, int(settings.request.base.cpus))
    task = ray.remote(run_child_on_node)
    options = {**settings.request.options(), "max_retries": settings.max_retries, "retry_exceptions": False}
    log.info(
        "%d pipelines as Ray tasks (%s each, at most %d at once, %d retries) on %s",
        len(children),
        settings.request.describe(),
        max_parallel,
        settings.max_retries,
        describe_nodes(),
    )
    pending, running, failed = deque(children), {}, []
    feasible = Feasibility(settings)
    level = logging.getLogger().getEffectiveLevel()
    try:
        while running or (pending and not failed):
            while pending and len(running) < max_parallel and not failed:
                index, opts = pending.popleft()
                ref = task.options(**options, name=f"pipeline-{index + 1}").remote(
                    opts, parent_run_id, env, threads, level
                )
                running[ref] = index
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
            for ref in ready:
                index = running.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed.append(f"pipeline {index + 1} failed: {_failure(exc)}")
                    log.error("%s", failed[-1])
                    continue
                on_done(index, row)
            if not ready:
                feasible.check()  # a cluster that lost every node able to run a pipeline: fail, don't hang
    finally:
        for ref in running:  # an error or Ctrl-C here: the tasks of this driver end with it
            ray.cancel(ref, force=True)
    if failed:
        raise RuntimeError("; ".join(failed) + ". Finished pipelines are kept: rerun the study to continue.")
