"""ONNX export: torch parity over 15 languages, int8 accuracy, checksums that refuse tampered files, the
pyfunc (premise/hypothesis columns) and the `stilts export` command."""

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer, XLMRobertaForSequenceClassification

from serving.engine import IntegrityError, NLIEngine, verify_registry_tags
from stilts_mlflow import export
from test_pipeline import stilts


@pytest.mark.slow
def test_export_matches_torch_in_every_language(exported, model_dir, dev):
    out, report = exported
    assert report.parity_pairs == 15 * 8
    assert max(report.parity_max_abs_diff.values()) <= export.PARITY_TOLERANCE
    assert set(report.dev_accuracy) == {"fp32", "int8"} and len(report.dev_accuracy["int8"]) == 16  # 15 + avg
    assert report.int8_delta_points == pytest.approx(
        100 * (report.dev_accuracy["int8"]["avg"] - report.dev_accuracy["fp32"]["avg"])
    )
    assert report.sizes["int8"] < report.sizes["fp32"]
    meta = json.loads((out / "stilts_onnx.json").read_text())
    assert meta["opset"] >= 17 and meta["labels"] == ["entailment", "neutral", "contradiction"]

    # dynamic axes: batches of other sizes and lengths than the export example, in several scripts
    import torch

    model = XLMRobertaForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    pairs = [(a, b) for lang in ("en", "zh", "ar", "hi", "th") for a, b, _ in dev[lang][:7]]
    engine = NLIEngine.load(out)
    got = engine.logits([a for a, _ in pairs], [b for _, b in pairs], batch_size=13)
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**enc).logits.numpy()
    assert got.shape == (35, 3) and np.abs(got - want).max() <= export.PARITY_TOLERANCE
    preds = engine.predict(["Tom buys a big dog ."], ["Tom buys a small dog ."])
    assert preds[0]["label"] in meta["labels"] and sum(preds[0]["probabilities"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_tampered_onnx_is_refused(exported, tmp_path):
    out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    NLIEngine.load(copy, "int8")  # intact: loads
    path = copy / "onnx" / "model.opt.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.opt.onnx: sha256 .* does not match"):
        NLIEngine.load(copy, "fp32")
    # a manifest rewritten to match the tampered file is still caught by the registry's tags
    checksums = json.loads((out / "checksums.json").read_text())
    tags = {f"sha256.{name.split('/')[-1]}": digest for name, digest in checksums.items()}
    verify_registry_tags(out, tags)
    from serving.engine import sha256_file

    forged = dict(checksums, **{"onnx/model.opt.onnx": sha256_file(path)})
    (copy / "checksums.json").write_text(json.dumps(forged))
    NLIEngine.load(copy, "fp32")  # the manifest alone cannot tell
    with pytest.raises(IntegrityError, match="does not match the registry tag"):
        verify_registry_tags(copy, tags)


@pytest.mark.slow
def test_parity_failure_fails_the_export(model_dir, dev, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # no graph can pass: the export must refuse
    with pytest.raises(export.ParityError, match="ONNX logits differ from torch"):
        export.export_model(model_dir, tmp_path / "x", {"en": [(a, b) for a, b, _ in dev["en"][:4]]})


@pytest.mark.slow
def test_export_command_logs_a_pyfunc(model_dir, tmp_path):
    proc = stilts(
        ["export", "--model-uri", str(model_dir), "--preset", "smoke", "--out", str(tmp_path / "onnx")],
        tmp_path,
        tmp_path / "cache",
    )
    assert "parity_max_abs_diff.fp32" in proc.stdout and "int8_delta_points" in proc.stdout
    model_uri = proc.stdout.split("logged model ")[1].split()[0]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(model_uri)
    assert set(model.metadata.flavors) == {"onnx", "python_function"}
    frame = pd.DataFrame(
        {
            "premise": ["Tom buys a big dog .", "Rosa 买了一只大狗。"],
            "hypothesis": ["Tom buys a small dog .", "Rosa 买了一只小狗。"],
        }
    )
    out = model.predict(frame)
    assert list(out.columns) == ["label", "p_entailment", "p_neutral", "p_contradiction"] and len(out) == 2
    assert np.allclose(out[["p_entailment", "p_neutral", "p_contradiction"]].sum(axis=1), 1.0, atol=1e-5)
    int8 = model.predict(frame, params={"variant": "int8"})
    assert np.abs(int8["p_entailment"] - out["p_entailment"]).max() < 0.05
    with pytest.raises(Exception, match="hypothesis"):
        model.predict(pd.DataFrame({"premise": ["x"]}))
