"""Build the shipped noise reference (stilts_mlflow/scaling/reference/) from a finished default study.

Run it in the study's working directory after `mlflow run . -e scaling` and `stilts transfer --seeds 0,1,2`:

    python scripts/make_reference.py --label "the default tiny study of 2026-12-07 (...)" \
        --description "..." --host "a 2-core AMD EPYC" --out stilts_mlflow/scaling/reference/default_tiny_DATE.json

It reads scaling_report/summary.json (per-language test scores of every pipeline), each pipeline's phase runs in
the tracking store (wall seconds per phase, for the cost model) and transfer_report/transfer.json (the k = 0
seed replicates), and writes one JSON file; point `noise.REFERENCE` at it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

log = logging.getLogger("make_reference")
PHASES = ("intermediate", "target", "evaluate")


def phase_seconds(client, run_id: str) -> dict[str, float]:
    """Wall seconds of each phase run nested under one pipeline run."""
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    out = {}
    for child in children:
        phase = child.data.tags.get("stilts.phase")
        if phase in PHASES and child.info.end_time:
            out[phase] = round((child.info.end_time - child.info.start_time) / 1000, 1)
    return out


@click.command()
@click.option("--study-dir", type=click.Path(exists=True, file_okay=False), default=".", help="Where the study ran.")
@click.option("--label", required=True, help="One line naming the study (shown in reports).")
@click.option("--description", required=True, help="What was run, where and how (commit, host, parallelism).")
@click.option("--host", required=True, help="The machine, in words (e.g. 'a 2-core AMD EPYC').")
@click.option("--parallel", type=int, default=2, show_default=True, help="Pipelines the study ran at a time.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The reference JSON to write.")
def main(study_dir: str, label: str, description: str, host: str, parallel: int, out: str) -> None:
    """Write the noise reference from a finished study's summary, tracking store and transfer report."""
    import mlflow

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(study_dir)
    summary = json.loads((root / "scaling_report" / "summary.json").read_text())
    transfer = json.loads((root / "transfer_report" / "transfer.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{(root / 'mlflow.db').resolve()}")
    client = mlflow.MlflowClient()
    runs = [
        {
            "subset": r["subset"],
            "k": r["k"],
            "seed": r["seed"],
            "xnli_test": r["xnli_test"],
            "phase_seconds": phase_seconds(client, r["run_id"]),
            "target_attempts": r["target_attempts"],
        }
        for r in summary["runs"]
    ]
    parent = client.get_run(client.get_run(summary["runs"][0]["run_id"]).data.tags["mlflow.parentRunId"])
    study_seconds = round((parent.info.end_time - parent.info.start_time) / 1000, 1)
    replicates = [
        {"subset": [], "k": 0, "seed": int(seed), "xnli_test": {k: round(v, 6) for k, v in s["accuracy"].items()}}
        for seed, s in sorted(transfer["seeds"].items(), key=lambda kv: int(kv[0]))
    ]
    ref = {
        "label": label,
        "description": description,
        "preset": "tiny",
        "host": host,
        "parallel": parallel,
        "study_seconds": study_seconds,
        "runs": runs,
        "seed_replicates": replicates,
    }
    Path(out).write_text(json.dumps(ref, indent=1) + "\n")
    log.info("wrote %s: %d runs, %d seed replicates, study %.0f s", out, len(runs), len(replicates), study_seconds)


if __name__ == "__main__":
    main()
