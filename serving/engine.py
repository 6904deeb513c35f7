"""NLI on an exported model directory with onnxruntime + tokenizers only (no torch, no transformers).

The directory is what `stilts export` writes:

    stilts_onnx.json      labels, max_length, languages, variants (file names) and their scores
    checksums.json        sha256 of every .onnx and tokenizer file; verified before a session is created
    onnx/model.onnx       fp32, as exported from torch
    onnx/model.opt.onnx   fp32 after onnxruntime's graph optimizations (served by default)
    onnx/model.int8.onnx  int8 dynamic quantization of the fp32 graph
    tokenizer/tokenizer.json

The MLflow pyfunc (`serving/pyfunc.py`) and the HTTP app both run through `NLIEngine`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META_FILE = "stilts_onnx.json"
CHECKSUM_FILE = "checksums.json"
TOKENIZER_FILE = "tokenizer/tokenizer.json"


class IntegrityError(RuntimeError):
    """An exported file does not match the checksum recorded at export time."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(model_dir: Path, names: list[str] | None = None) -> dict[str, str]:
    """Recompute the sha256 of the listed files (default: all in checksums.json); raise IntegrityError
    naming the first file that is missing or differs."""
    model_dir = Path(model_dir)
    path = model_dir / CHECKSUM_FILE
    if not path.exists():
        raise IntegrityError(f"{path} is missing: refusing to load an export without checksums")
    recorded: dict[str, str] = json.loads(path.read_text())
    for name in names if names is not None else list(recorded):
        if name not in recorded:
            raise IntegrityError(f"{name} has no checksum in {path}")
        file = model_dir / name
        if not file.exists():
            raise IntegrityError(f"{file} is missing (listed in {path})")
        actual = sha256_file(file)
        if actual != recorded[name]:
            raise IntegrityError(f"{file}: sha256 {actual[:16]}… does not match the exported {recorded[name][:16]}…; "
                                 "the file was modified or corrupted after export")
    return recorded


def verify_registry_tags(model_dir: Path, tags: dict[str, str]) -> None:
    """The registry's `sha256.<file>` tags (written at export, outside the model's own files) must match
    both checksums.json and the files themselves: a swapped file *and* manifest is caught too."""
    recorded = verify_checksums(model_dir)
    for name, digest in recorded.items():
        tag = tags.get(f"sha256.{Path(name).name}")
        if name.endswith(".onnx") and tag != digest:
            raise IntegrityError(f"{Path(model_dir) / name}: sha256 {digest[:16]}… does not match the registry tag "
                                 f"sha256.{Path(name).name}={str(tag)[:16]}…")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class NLIEngine:
    """A verified onnxruntime session and its tokenizer; `predict` maps text pairs to labels."""

    session: object  # onnxruntime.InferenceSession
    tokenizer: object  # tokenizers.Tokenizer
    labels: tuple[str, ...]
    max_length: int
    meta: dict
    variant: str

    @classmethod
    def load(cls, model_dir: str | Path, variant: str = "fp32", threads: int | None = None,
             spinning: bool = False) -> "NLIEngine":
        """`spinning`: let onnxruntime's idle threads spin for the next call. Off by default: a server's
        event loop shares the cores, and spinning threads starve it (benchmarks/serving.py)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        meta_path = model_dir / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{model_dir} is not a stilts ONNX export ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text())
        if variant not in meta["variants"]:
            raise ValueError(f"unknown variant {variant!r}; this export has {', '.join(meta['variants'])}")
        onnx_file = meta["variants"][variant]
        verify_checksums(model_dir, [onnx_file, TOKENIZER_FILE])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("STILTS_ORT_THREADS", "0"))
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(model_dir / onnx_file), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        tokenizer.enable_truncation(meta["max_length"], strategy="longest_first")
        tokenizer.enable_padding(pad_id=meta["pad_id"], pad_token=meta["pad_token"])
        return cls(session, tokenizer, tuple(meta["labels"]), meta["max_length"], meta, variant)

    def encode(self, premises: list[str], hypotheses: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(zip(premises, hypotheses)))
        return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}

    def logits(self, premises: list[str], hypotheses: list[str], batch_size: int = 64) -> np.ndarray:
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        out = [self.session.run(["logits"], self.encode(premises[i:i + batch_size], hypotheses[i:i + batch_size]))[0]
               for i in range(0, len(premises), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(self, premises: list[str], hypotheses: list[str], batch_size: int = 64) -> list[dict]:
        probs = softmax(self.logits(premises, hypotheses, batch_size))
        return [{"label": self.labels[int(p.argmax())],
                 "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}} for p in probs]
