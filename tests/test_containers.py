"""The train and serve images, built offline (debootstrap base, wheels in the context, --network none):
the serve image answers NLI on loopback without torch; the train image runs the smoke pipeline."""

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import CONTAINER_BUILD, free_port, wait_container_prepare

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="docker needs root here")]


def docker(*args, check=True, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def images(exported):
    model = ROOT / ".docker-build" / "model"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(exported[0], model)
    wait_container_prepare()  # the base image and wheels, started at collection (conftest.py)
    subprocess.run(
        ["bash", str(CONTAINER_BUILD)],
        check=True,
        timeout=2400,
        env={**os.environ, "PYTHON": os.environ.get("PYTHON", __import__("sys").executable)},
    )
    return {t: json.loads(docker("image", "inspect", f"stilts-{t}").stdout)[0] for t in ("serve", "train")}


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_serve_image_answers_without_torch(images):
    size = images["serve"]["Size"]
    print(f"stilts-serve image: {size / 1e6:.0f} MB; stilts-train: {images['train']['Size'] / 1e6:.0f} MB")
    assert images["serve"]["Config"]["User"] == "stilts"
    no_torch = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python", "stilts-serve", "-c", "import torch", check=False
    )
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    port = free_port()
    name = f"stilts-serve-test-{port}"
    docker("run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8080", "stilts-serve")
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(docker("logs", name, check=False).stderr[-2000:])
        pairs = [
            ("Tom buys a big dog .", "Tom buys a small dog ."),
            ("Rosa achète un chien grand .", "Rosa achète un chien ."),
            ("Amit 买了一只大狗。", "Amit 买了一只狗。"),
            ("Omar يشتري كلبا كبيرا .", "Omar يشتري كلبا ."),
            ("Lena चो दुखु खुकेवे सोजि ।", "Lena चो दुर खुकेवे सोजि ।"),
        ]
        out = _post(f"http://127.0.0.1:{port}/v1/nli", {"pairs": [{"premise": a, "hypothesis": b} for a, b in pairs]})
        assert [r["label"] in ("entailment", "neutral", "contradiction") for r in out["results"]] == [True] * 5
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=5).read())
        assert len(info["languages"]) == 15
    finally:
        docker("rm", "-f", name, check=False)


def test_train_image_runs_the_smoke_pipeline(images):
    assert images["train"]["Config"]["User"] == "stilts"
    proc = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "stilts-train",
        "pipeline",
        "--preset",
        "smoke",
        "--no-progress",
        timeout=900,
    )
    assert "zero-shot XNLI test accuracy: en" in proc.stdout, proc.stderr[-2000:]
