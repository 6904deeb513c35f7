"""Every file the server reads is verified: the manifest (checksums.json) covers the ONNX graphs, the
tokenizer files and the model metadata, and a registry version pins the manifest by its own sha256 tag.
Tampering with any file (label order, tokenizer with a rewritten manifest, symlinks out of the model
directory, metadata missing fields) stops start-up with one line; starting leaves the store untouched."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import pytest

from netutil import serve
from serving import loader
from serving.engine import (
    CHECKSUM_FILE,
    MANIFEST_TAG,
    META_FILE,
    TOKENIZER_FILE,
    IntegrityError,
    NLIEngine,
    sha256_file,
)

GRAPH = "onnx/model.opt.onnx"


def _rewrite_manifest(model_dir: Path) -> None:
    """What an attacker with write access does after changing a file: recompute checksums.json."""
    recorded = json.loads((model_dir / CHECKSUM_FILE).read_text())
    (model_dir / CHECKSUM_FILE).write_text(json.dumps({f: sha256_file(model_dir / f) for f in recorded}))


def _swap_labels(model_dir: Path) -> None:
    meta = json.loads((model_dir / META_FILE).read_text())
    meta["labels"] = meta["labels"][::-1]  # contradiction first: the server would answer the opposite
    (model_dir / META_FILE).write_text(json.dumps(meta))


def _change_tokenizer(model_dir: Path) -> None:
    tok = json.loads((model_dir / TOKENIZER_FILE).read_text())
    tok["truncation"] = {"direction": "Left", "max_length": 3, "strategy": "LongestFirst", "stride": 0}
    (model_dir / TOKENIZER_FILE).write_text(json.dumps(tok))


@pytest.fixture
def copy(exported, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(exported[0], out)
    return out


def test_manifest_covers_every_file_the_server_reads(exported):
    recorded = json.loads((exported[0] / CHECKSUM_FILE).read_text())
    meta = json.loads((exported[0] / META_FILE).read_text())
    assert {META_FILE, TOKENIZER_FILE, *meta["variants"].values()} <= set(recorded)


# --- directory mode: checksums.json -----------------------------------------------------------------
DIRECTORY_TAMPER = {
    "label order": (_swap_labels, "stilts_onnx.json: sha256 .* does not match the exported"),
    "tokenizer": (_change_tokenizer, "tokenizer.json: sha256 .* does not match the exported"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DIRECTORY_TAMPER))
def test_a_tampered_file_is_refused_in_a_directory(copy, case):
    tamper, message = DIRECTORY_TAMPER[case]
    tamper(copy)
    with pytest.raises(IntegrityError, match=message):
        loader.load(str(copy))


@pytest.mark.slow
@pytest.mark.parametrize("name", [META_FILE, TOKENIZER_FILE, GRAPH, CHECKSUM_FILE])
def test_a_symlink_out_of_the_model_directory_is_refused(copy, tmp_path, name):
    outside = tmp_path / "outside" / Path(name).name
    outside.parent.mkdir()
    shutil.move(copy / name, outside)  # same bytes, so only the link's target can give it away
    (copy / name).symlink_to(outside)
    with pytest.raises(IntegrityError, match="outside the model directory"):
        NLIEngine.load(copy)


@pytest.mark.slow
@pytest.mark.parametrize("field", ["labels", "variants", "max_length", "pad_id", "pad_token"])
def test_metadata_missing_a_field_is_one_clear_error(copy, field):
    meta = json.loads((copy / META_FILE).read_text())
    del meta[field]
    (copy / META_FILE).write_text(json.dumps(meta))
    _rewrite_manifest(copy)  # a directory carries no pin: the manifest passes, the metadata check does not
    with pytest.raises(IntegrityError, match=f"field '{field}' must be"):
        NLIEngine.load(copy)


@pytest.mark.slow
def test_directory_mode_says_it_has_no_registry_pin(exported):
    engine, info = loader.load(str(exported[0]))
    assert "no registry pin" in info["integrity"]


# --- registry mode: the manifest pinned by a tag ----------------------------------------------------
def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def registry(exported, tmp_path_factory):
    """A sqlite store whose `stilts-xnli-onnx` version 1 is the export, tagged as `stilts export` tags it.
    Yields (tracking URI, store root, local artifact folder of the export inside the store)."""
    from stilts_mlflow.registry import ONNX_MODEL_NAME, integrity_tags, log_onnx_model

    root = tmp_path_factory.mktemp("store")
    uri, previous = f"sqlite:///{root / 'mlflow.db'}", mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serve", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            model_id = log_onnx_model(exported[0], run.info.run_id, "onnx-test", [("a .", "b .")])
        mv = mlflow.register_model(f"models:/{model_id}", ONNX_MODEL_NAME, tags=integrity_tags(exported[0]))
        stored = next(p.parent for p in (root / "artifacts").rglob(META_FILE))
        yield uri, root, stored, f"models:/{ONNX_MODEL_NAME}/{mv.version}"
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def store(registry):
    """The registry, with the stored export restored after the test tampered with it."""
    uri, root, stored, model_uri = registry
    backup = root.parent / f"{root.name}-backup"
    shutil.copytree(stored, backup, symlinks=True, dirs_exist_ok=True)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield stored, model_uri
    finally:
        mlflow.set_tracking_uri(previous)
        shutil.rmtree(stored)
        shutil.copytree(backup, stored, symlinks=True)
        shutil.rmtree(backup)


REGISTRY_TAMPER = {
    "label order, manifest rewritten": (lambda d: (_swap_labels(d), _rewrite_manifest(d)), "registry tag"),
    "tokenizer, manifest rewritten": (lambda d: (_change_tokenizer(d), _rewrite_manifest(d)), "registry tag"),
    "graph, manifest rewritten": (
        lambda d: ((d / GRAPH).write_bytes((d / GRAPH).read_bytes()[:-8]), _rewrite_manifest(d)),
        "registry tag",
    ),
    "label order": (_swap_labels, "stilts_onnx.json: sha256 .* does not match the exported"),
    "metadata field missing, manifest rewritten": (
        lambda d: (
            (d / META_FILE).write_text(json.dumps({"labels": ["entailment", "contradiction"]})),
            _rewrite_manifest(d),
        ),
        "registry tag",
    ),
}


@pytest.mark.slow
def test_a_registry_version_loads_and_pins_its_manifest(store):
    stored, model_uri = store
    engine, info = loader.load(model_uri)
    assert info["version"] == "1" and MANIFEST_TAG in info["integrity"]
    assert engine.labels == ("entailment", "neutral", "contradiction")


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(REGISTRY_TAMPER))
def test_a_tampered_registry_version_is_refused(store, case):
    stored, model_uri = store
    tamper, message = REGISTRY_TAMPER[case]
    tamper(stored)
    with pytest.raises(IntegrityError, match=message):
        loader.load(model_uri)


@pytest.mark.slow
def test_a_tampered_registry_version_stops_start_up_with_one_line(store, registry):
    stored, model_uri = store
    _change_tokenizer(stored)
    _rewrite_manifest(stored)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry[0]}
    proc = subprocess.run(
        [sys.executable, "-m", "serving", "--model-uri", model_uri],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"does not match the registry tag {MANIFEST_TAG}" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_start_up_errors_are_one_line(tmp_path, registry):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"}
    cases = [
        (["--model-uri", "models:/stilts-xnli-onnx/1"], env, "does not exist"),
        (["--model-uri", str(tmp_path / "nope")], None, "not a directory"),
        (["--model-uri", str(tmp_path)], None, "holds no stilts ONNX export"),
    ]
    for args, case_env, message in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "serving", *args],
            env=case_env or dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr
    assert not (tmp_path / "missing").exists()  # no empty store created on the way


@pytest.mark.slow
def test_starting_the_server_leaves_the_store_byte_identical(registry):
    uri, root, stored, model_uri = registry
    before = _tree_digest(root)
    proc, url = serve(["--model-uri", model_uri], {**os.environ, "MLFLOW_TRACKING_URI": uri})
    try:
        assert httpx.post(f"{url}/v1/nli", json={"premise": "a .", "hypothesis": "b ."}).status_code == 200
        assert MANIFEST_TAG in httpx.get(f"{url}/v1/model").json()["integrity"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert _tree_digest(root) == before
