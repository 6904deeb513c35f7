"""Shared by the tests: the CLI in a subprocess, the runs it tracked, servers on loopback."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
from safetensors.torch import load_file


def stilts(args, cwd: Path, cache: Path, extra_env=None, check=True, prelude: str = "") -> subprocess.CompletedProcess:
    """The CLI in a subprocess; `prelude` (Python) runs first in that process, e.g. to change a preset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # this checkout's package first, whatever the environment has installed (the subprocess runs in `cwd`)
    repo = str(Path(__file__).resolve().parents[1])
    env.update(
        {
            "STILTS_CACHE": str(cache),
            "PYTHONPATH": os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")])),
            **(extra_env or {}),
        }
    )
    command = ["-c", f"{prelude}\nfrom stilts_mlflow.cli import main\nmain()"] if prelude else ["-m", "stilts_mlflow"]
    proc = subprocess.run(
        [sys.executable, *command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stilts {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def runs(cwd: Path):
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["stilts-xnli"], output_format="list")


def by_phase(all_runs, phase):
    return [r for r in all_runs if r.data.tags.get("stilts.phase") == phase]


def outputs(cache: Path) -> dict[str, dict]:
    """Every trained phase's output weights, by phase."""
    out = {}
    for state in cache.glob("runs/*/train/last/trainer_state.json"):
        phase = json.loads(state.read_text())["config"]["phase"]
        out[phase] = {f.name: load_file(str(f)) for f in (state.parents[2] / "output").glob("*.safetensors")}
    return out


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(args: list[str], env: dict | None = None, timeout: float = 60.0):
    """`python -m serving ARGS` on a free loopback port, ready (/readyz 200) before this returns:
    (process, base URL). The caller terminates the process."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "--port", str(port), *args],
        env=env if env is not None else dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"server not ready after {timeout} s")


def tiny_model():
    """A one-layer classifier, its AdamW and a decaying schedule: the smallest thing that trains."""
    import torch

    from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
    from stilts_mlflow.presets import ModelConfig

    cfg = encoder_config(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32), 50)
    model = MultiTaskModel(cfg, [HeadSpec("nli", "classification", 3)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, opt, sched


# smoke with target restarts: no attempt can pass stop_above, so every attempt runs (1 + 1 restart)
RESTARTING = """import dataclasses, stilts_mlflow.presets as p
s = p.PRESETS["smoke"]
p.PRESETS["smoke"] = dataclasses.replace(s, target=dataclasses.replace(s.target, restarts=1, stop_above=1.01))"""
# ... and the first attempt gives up at its first evaluation (step 6 of 12); the last runs its whole schedule
GIVING_UP = RESTARTING.replace("stop_above=1.01", "stop_above=1.01, restart_at=6")


def numbers(cwd: Path) -> dict:
    summary = json.loads((cwd / "scaling_report" / "summary.json").read_text())
    return {
        "curve": summary["curve"],
        "verdict": summary["verdict"],
        "scores": sorted((r["seed"], r["xnli_test_avg"], r["xnli_dev_avg"]) for r in summary["runs"]),
    }


def smoke_study(seeds: str, *extra: str) -> list[str]:
    """`stilts scaling` on the smoke preset at k = 0, one pipeline per seed, quiet and without exports."""
    return ["scaling", "--preset", "smoke", "--sizes", "0", "--seeds", seeds, "--no-export", "--no-progress", *extra]


# --- the container tests' slow set-up, started early ---------------------------------------------------------
CONTAINER_BUILD = Path(__file__).resolve().parents[1] / "scripts" / "container_build.sh"
PREPARE_LOG = Path("/tmp/stilts-container-prepare.log")
_prepare: subprocess.Popen | None = None


def start_container_prepare() -> None:
    """What the image builds need before any model exists, while other tests run: Debian's docker.io and
    debootstrap now (in the foreground, so apt never races the browser test's install for dpkg's lock), then
    dockerd, the debootstrap base image and the wheels in the background. A failure here is left for the
    container tests to report: `images` runs the whole build script, which redoes what is missing."""
    global _prepare
    if _prepare is not None:
        return
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    install = subprocess.run(["bash", str(CONTAINER_BUILD), "install"], env=env, capture_output=True, timeout=900)
    if install.returncode != 0:
        return
    with PREPARE_LOG.open("w") as log:
        _prepare = subprocess.Popen(
            ["bash", str(CONTAINER_BUILD), "prepare"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def wait_container_prepare(timeout: float = 2400) -> None:
    """Wait for `start_container_prepare`'s background part, if one was started."""
    if _prepare is not None and _prepare.wait(timeout) != 0:
        print(f"container_build.sh prepare failed; its log:\n{PREPARE_LOG.read_text()[-2000:]}")
