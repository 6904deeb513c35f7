"""The MLflow layer's own behaviour (tracking.py)."""

import sqlite3

import mlflow
import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import IntegrityError

from stilts_mlflow import tracking


def _server_error(cause: IntegrityError) -> MlflowException:
    """The same violation as a tracking server reports it: the store's message in a BAD_REQUEST response."""
    return RestException({"error_code": "BAD_REQUEST", "message": str(cause)})


def _race(real, competitor_run: str, raised: list, remote: bool = False):
    """mlflow.log_inputs as it behaves when another process inserts the same new datasets between MLflow's
    lookup and its insert: the other run's rows land, this call fails on the unique key (rolled back)."""

    def log_inputs(datasets, contexts, tags_list):
        if not raised:
            raised.append(True)
            MlflowClient().log_inputs(
                competitor_run, [mlflow.tracking.fluent._create_dataset_input(d, c) for d, c in zip(datasets, contexts)]
            )
            cause = IntegrityError("INSERT INTO datasets", {}, Exception("UNIQUE constraint failed: datasets.name"))
            if remote:
                raise _server_error(cause)
            raise MlflowException(str(cause)) from cause
        return real(datasets=datasets, contexts=contexts, tags_list=tags_list)

    return log_inputs


@pytest.fixture(autouse=True)
def _store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("remote", [False, True], ids=["local-store", "tracking-server"])
def test_dataset_inputs_survive_another_process_inserting_them_first(tmp_path, monkeypatch, remote):
    files = {}
    for lang in ("en", "fr"):
        files[f"xnli-test-{lang}"] = tmp_path / f"test.{lang}.jsonl"
        files[f"xnli-test-{lang}"].write_text(f'{{"lang": "{lang}"}}\n')
    experiment = mlflow.create_experiment("race")
    competitor = MlflowClient().create_run(experiment).info.run_id
    raised: list = []
    monkeypatch.setattr(tracking.mlflow, "log_inputs", _race(mlflow.log_inputs, competitor, raised, remote))
    with mlflow.start_run(experiment_id=experiment) as run:
        tracking.log_inputs(files, "test")
    assert raised  # the race happened, and was retried
    for run_id in (run.info.run_id, competitor):
        inputs = MlflowClient().get_run(run_id).inputs.dataset_inputs
        assert sorted(i.dataset.name for i in inputs) == sorted(files)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # one row per file, shared by both runs
        assert db.execute("SELECT COUNT(*) FROM datasets").fetchone() == (2,)


def test_other_tracking_errors_are_not_retried(tmp_path, monkeypatch):
    (tmp_path / "a.jsonl").write_text("{}\n")
    calls = []

    def broken(datasets, contexts, tags_list):
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: no such run")

    monkeypatch.setattr(tracking.mlflow, "log_inputs", broken)
    with mlflow.start_run(experiment_id=mlflow.create_experiment("broken")):
        with pytest.raises(MlflowException, match="no such run"):
            tracking.log_inputs({"a": tmp_path / "a.jsonl"}, "train")
    assert len(calls) == 1


def test_a_servers_other_bad_requests_are_not_retried(tmp_path, monkeypatch):
    (tmp_path / "a.jsonl").write_text("{}\n")
    calls = []

    def rejected(datasets, contexts, tags_list):
        calls.append(1)
        raise RestException({"error_code": "BAD_REQUEST", "message": "Dataset name too long"})

    monkeypatch.setattr(tracking.mlflow, "log_inputs", rejected)
    with mlflow.start_run(experiment_id=mlflow.create_experiment("rejected")):
        with pytest.raises(MlflowException, match="too long"):
            tracking.log_inputs({"a": tmp_path / "a.jsonl"}, "train")
    assert len(calls) == 1
