"""Every CLI parameter is checked before any work or run starts: a typo is one line, exit code 2, and
leaves no FAILED run in the store."""

import mlflow
import pytest

from helpers import stilts

CASES = [
    (["pipeline", "--source", "local"], "data source 'local' needs a data directory"),
    (["pipeline", "--source", "local", "--data-dir", "nowhere"], "--data-dir nowhere: no such directory"),
    (["pipeline", "--tasks", "mnli,,squad"], "--tasks has an empty item in 'mnli,,squad'"),
    (["pipeline", "--tasks", "mnli,"], "--tasks has an empty item"),
    (["target", "--mixed-precision", "fp16"], "--mixed-precision fp16 needs a CUDA GPU"),
    (["scaling", "--preset", "smoke", "--sizes", "5-2"], "sizes must name at least one whole number"),
    (["scaling", "--preset", "smoke", "--sizes", ""], "sizes must look like 0-9 or 0,1,4"),
    (["scaling", "--preset", "smoke", "--sizes", "0,,1"], "sizes must look like 0-9 or 0,1,4"),
    (["scaling", "--preset", "smoke", "--seeds", "3-1"], "seeds must name at least one whole number"),
    (["scaling", "--plan", "--preset", "xlmr-large", "--gpu", "TPU"], "gpu 'TPU' has no assumed throughput"),
    (["scaling", "--plan", "--tokens-per-second", "5000"], "apply to presets with a GPU throughput"),
    (["scaling", "--preset", "smoke", "--gpu", "L4"], "--gpu and --tokens-per-second apply to --plan"),
    (["simulate", "--sizes", "0,9"], "sizes must name at least three sizes"),
    (["simulate", "--noise-from", "missing.json"], "noise source missing.json: no such file"),
    (["export", "--model-uri", "models:/stilts-xnli@nope"], "models:/stilts-xnli@nope: no such registered model"),
    (["export", "--model-uri", "models:/stilts-xnli/99"], "models:/stilts-xnli/99: no such registered model"),
    (["data", "describe", "--source", "local", "--data-dir", "nowhere"], "--data-dir nowhere: no such directory"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_parameter_is_one_line_exit_2_and_no_run(tmp_path, args, message):
    if args[:3] == ["target", "--mixed-precision", "fp16"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("fp16 is valid where a CUDA GPU is present")
    proc = stilts(args, tmp_path, tmp_path / "cache", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]
    if (tmp_path / "mlflow.db").exists():
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
