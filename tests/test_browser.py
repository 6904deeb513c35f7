"""The MLflow UI in a real browser: after a smoke study, Debian's chromium (headless, closed network)
opens `mlflow ui` on loopback; the experiment's runs page lists the study's runs and the scaling run's
artifact view shows the report's curve plot. Screenshots go to test-artifacts/browser/ (or
$STILTS_TEST_ARTIFACTS/browser/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers import free_port
from helpers import by_phase, runs, stilts

ARTIFACTS = Path(os.environ.get("STILTS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
# headless, and nothing that reaches outside loopback (updates, sync, translation, metrics, DNS prefetch)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-translate",
    "--disable-features=Translate,MediaRouter,OptimizationHints,DnsOverHttps",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1400,1000",
    "--virtual-time-budget=20000",
]


# the browser, and fonts for every XNLI script (Arabic, Devanagari, Thai, CJK...), so screenshots show text, not boxes
PACKAGES = ("chromium", "fonts-noto-core", "fonts-noto-cjk")


def _installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def chromium() -> str:
    missing = [p for p in PACKAGES if not _installed(p)] if shutil.which("dpkg-query") else []
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=900,
        )
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    return found


def _browse(browser: str, url: str, screenshot: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    common = [browser, *FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    return dom


def _text(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


@pytest.mark.slow
def test_mlflow_ui_shows_the_study_and_its_report_plot(tmp_path):
    browser = chromium()
    stilts(
        ["scaling", "--preset", "smoke", "--sizes", "0", "--seeds", "0,1", "--no-export", "--no-progress"],
        tmp_path,
        tmp_path / "cache",
    )
    (scaling,) = by_phase(runs(tmp_path), "scaling")
    experiment, run_id = scaling.info.experiment_id, scaling.info.run_id
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    out = ARTIFACTS / "browser"
    out.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(120):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        base = f"http://127.0.0.1:{port}/#/experiments/{experiment}"
        listing = _text(_browse(browser, f"{base}/runs", out / "experiment_runs.png", tmp_path / "profile"))
        assert "stilts-xnli" in listing and "scaling" in listing, listing[:2000]
        child = by_phase(runs(tmp_path), "pipeline")[0]
        child_page = _text(
            _browse(browser, f"{base}/runs/{child.info.run_id}", out / "pipeline_run.png", tmp_path / "profile")
        )
        assert child.info.run_name in child_page and "test/accuracy_avg" in child_page, child_page[:2000]
        dom = _browse(
            browser,
            f"{base}/runs/{run_id}/artifacts/report/curve.png",
            out / "scaling_report_curve.png",
            tmp_path / "profile",
        )
        for name in ("curve.png", "marginal_gains.png", "k_by_language.png", "report.html", "summary.json"):
            assert name in _text(dom)
        assert re.search(r'<img[^>]+alt="report/curve.png"[^>]+src="blob:', dom), "the curve plot was not shown"
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)
    for shot in ("experiment_runs.png", "pipeline_run.png", "scaling_report_curve.png"):
        assert (out / shot).stat().st_size > 20_000  # a rendered page, not a blank one
