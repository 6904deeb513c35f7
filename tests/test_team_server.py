"""Team tracking server: Debian's PostgreSQL as MLflow's backend store, `mlflow server` with proxied
artifacts (scripts/tracking_server.sh), a smoke study run against it, and the registry versions and
aliases found in the PostgreSQL database itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from netutil import free_port
from test_pipeline import stilts

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "tracking_server.sh"


def _postgres_available() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it is installed or installable."""
    if any(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"
    return None


@pytest.fixture
def team_server():
    reason = _postgres_available()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="stilts-team-"))  # not pytest's tmp_path: the postgres user must enter it
    root.chmod(0o755)
    pg_port, port = free_port(), free_port()
    start = subprocess.run(
        ["bash", str(SCRIPT), "start", str(root), str(pg_port), str(port)], capture_output=True, text=True, timeout=600
    )
    if start.returncode == 3:  # the script's exit code for "PostgreSQL cannot be installed"
        pytest.skip(start.stderr.strip())
    log = root / "mlflow.log"
    assert start.returncode == 0, start.stderr + (log.read_text()[-3000:] if log.exists() else "")
    try:
        yield {"uri": f"http://127.0.0.1:{port}", "pg_port": pg_port, "root": root}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(root)], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _sql(server: dict, query: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=server["pg_port"], user="postgres", dbname="mlflow") as conn:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()


@pytest.mark.slow
def test_smoke_study_on_a_postgres_tracking_server(team_server, tmp_path):
    out = stilts(
        ["scaling", "--preset", "smoke", "--sizes", "0", "--seeds", "0,1", "--no-progress"],
        tmp_path,
        tmp_path / "cache",
        extra_env={"MLFLOW_TRACKING_URI": team_server["uri"]},
    )
    assert "pipelines: 2 (0 reused)" in out.stdout, out.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()  # all on the server

    versions = _sql(team_server, "SELECT name, version, run_id FROM model_versions ORDER BY name, version")
    assert [(n, v) for n, v, _ in versions] == [("stilts-xnli", 1), ("stilts-xnli-onnx", 1)]
    aliases = dict(
        ((n, a), v) for n, a, v in _sql(team_server, "SELECT name, alias, version FROM registered_model_aliases")
    )
    for name in ("stilts-xnli", "stilts-xnli-onnx"):
        assert aliases[(name, "champion")] == aliases[(name, "best-k0")] == aliases[(name, "subset-none")] == 1
    tags = dict(_sql(team_server, "SELECT key, value FROM model_version_tags WHERE name = 'stilts-xnli'"))
    assert tags["subset"] == "none" and tags["preset"] == "smoke"
    phases = dict(_sql(team_server, "SELECT value, count(*) FROM tags WHERE key = 'stilts.phase' GROUP BY value"))
    assert phases == {"scaling": 1, "pretrain": 1, "pipeline": 2, "target": 2, "evaluate": 2, "export": 1}

    # artifacts went through the server's proxy into its artifact store, and come back through it
    assert any((team_server["root"] / "artifacts").rglob("summary.json"))
    load = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlflow; from transformers import AutoConfig; "
            "p = mlflow.artifacts.download_artifacts('models:/stilts-xnli@champion'); "
            "print(AutoConfig.from_pretrained(p).id2label[0])",
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": team_server["uri"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert load.stdout.strip().endswith("entailment"), load.stderr[-2000:]
