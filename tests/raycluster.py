"""A real multi-node Ray cluster on this machine for tests, and an `mlflow server` on loopback.

Each node is `ray start --block` in a session of its own (its raylet, agents and workers all carry that
session id), with its own resources, environment and STILTS_CACHE; `kill_node` SIGKILLs every process of
one node's session, which is what losing a machine looks like to Ray. Nodes bind to 127.0.0.2: Ray turns
127.0.0.1 and localhost into this machine's network address, 127.0.0.2 it keeps, so all traffic stays on
loopback. Teardown kills exactly the processes of this cluster's sessions (never `ray stop`, which would
stop every Ray process on the machine, other users' included).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from helpers import free_port

RAY_IP = "127.0.0.2"
REPO = str(Path(__file__).resolve().parents[1])
RAY = str(Path(sys.executable).parent / "ray")


def ray_importable() -> str | None:
    """Why Ray cannot be used here, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install '.[cluster]')"
    return None


def session_processes(sid: int) -> list[int]:
    """Every live process whose session id is `sid`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (pids := session_processes(sid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    cache: Path
    resources: dict[str, float]


@dataclass
class LocalRayCluster:
    """`ray start` head plus workers on this machine, 1 CPU each unless told; `address` for RAY_ADDRESS."""

    root: Path
    port: int = field(default_factory=lambda: free_port())
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{RAY_IP}:{self.port}"

    def _env(self, cache: Path, extra: dict[str, str] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "STILTS_"))}
        return {
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")])),
            "STILTS_CACHE": str(cache),
            "RAY_USAGE_STATS_ENABLED": "0",
            "OMP_NUM_THREADS": "1",
            # a dead node is declared dead after ~3 s, not Ray's default ~30 s
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            **(extra or {}),
        }

    def start_node(
        self,
        name: str,
        resources: dict[str, float],
        cpus: int = 1,
        head: bool = False,
        env: dict[str, str] | None = None,
    ) -> Node:
        cache = self.root / name / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        args = [
            RAY,
            "start",
            "--block",
            "--num-cpus",
            str(cpus),
            "--num-gpus",
            "0",
            "--resources",
            json.dumps(resources),
            "--node-ip-address",
            RAY_IP,
            "--disable-usage-stats",
            "--object-store-memory",
            str(80 * 2**20),
            "--temp-dir",
            str(self.root / "ray"),
        ]
        args += (
            ["--head", "--port", str(self.port), "--include-dashboard", "false"]
            if head
            else ["--address", self.address]
        )
        log = open(self.root / f"{name}.log", "w")
        process = subprocess.Popen(
            args, env=self._env(cache, env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root
        )
        self.nodes[name] = Node(name, process, cache, resources)
        return self.nodes[name]

    def _ask(self, expression: str) -> subprocess.CompletedProcess:
        """`expression` printed by a Ray driver in a subprocess (this test process stays no Ray driver)."""
        code = (
            "import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
            f"print({expression})"
        )
        return subprocess.run(
            [sys.executable, "-c", code, self.address],
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env(self.root, None),
        )

    def wait_nodes(self, count: int, timeout: float = 120.0) -> None:
        """Until `count` nodes are alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.process.poll() is not None:
                    raise RuntimeError(f"ray node {node.name} exited: {self.log(node.name)[-2000:]}")
            out = self._ask("sum(n['Alive'] for n in ray.nodes())")
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise RuntimeError(f"{count} ray nodes not alive after {timeout} s")

    def node_ids(self) -> dict[str, str]:
        """Node id of each node, by the custom resource it was started with."""
        out = self._ask("json.dumps([[n['NodeID'], n['Resources']] for n in ray.nodes() if n['Alive']])")
        if out.returncode:
            raise RuntimeError(f"ray.nodes() failed: {out.stderr[-2000:]}")
        found = {}
        for node_id, resources in json.loads(out.stdout.strip().splitlines()[-1]):
            for node in self.nodes.values():
                if set(node.resources) <= set(resources):
                    found[node.name] = node_id
        return found

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of the node: its raylet, agents and the workers running its tasks."""
        kill_session(self.nodes[name].process.pid)
        self.nodes[name].process.wait()

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        for name in reversed(list(self.nodes)):
            self.kill_node(name)


def start_cluster(worker_env: dict[str, str] | None = None) -> LocalRayCluster:
    """Head (resource head_node) and one worker (resource worker_node), 1 CPU each, both alive."""
    cluster = LocalRayCluster(Path(tempfile.mkdtemp(prefix="stilts-ray-")))
    try:
        cluster.start_node("head", {"head_node": 1}, head=True)
        cluster.start_node("worker", {"worker_node": 1}, env=worker_env)
        cluster.wait_nodes(2)
    except BaseException:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        raise
    return cluster


@dataclass
class MlflowServer:
    process: subprocess.Popen
    uri: str
    root: Path

    def stop(self) -> None:
        kill_session(self.process.pid)
        self.process.wait()


def start_mlflow_server(root: Path, timeout: float = 120.0) -> MlflowServer:
    """`mlflow server` on loopback with a sqlite backend store and proxied artifacts (children on any node
    upload through it), ready before this returns."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(root / "mlflow-server.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'mlflow-server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                return MlflowServer(process, uri, root)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    kill_session(process.pid)
    raise RuntimeError(f"mlflow server not ready after {timeout} s")
