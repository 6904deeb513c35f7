"""NLI on an exported model directory with onnxruntime + tokenizers only (no torch, no transformers).

The directory is what `stilts export` writes:

    stilts_onnx.json      labels, max_length, languages, variants (file names) and their scores
    checksums.json        the manifest: sha256 of every file the server reads (stilts_onnx.json, the .onnx
                          graphs, the tokenizer files); a registry version pins it by its own sha256 tag
    onnx/model.onnx       fp32, as exported from torch
    onnx/model.opt.onnx   fp32 after onnxruntime's graph optimizations (served by default)
    onnx/model.int8.onnx  int8 dynamic quantization of the fp32 graph
    tokenizer/tokenizer.json

The MLflow pyfunc (`serving/pyfunc.py`) and the HTTP app both run through `NLIEngine`. Every file is read
once into memory, checked against the manifest and used from those bytes (no window between check and
use); a path that resolves outside the model directory (a symlink out) is refused.
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
MANIFEST_TAG = f"sha256.{CHECKSUM_FILE}"  # registry tag pinning the manifest (and through it every file)


class IntegrityError(RuntimeError):
    """An exported file does not match the checksum recorded at export time."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(model_dir: Path, name: str) -> Path:
    """`model_dir/name`, refused when it resolves (symlinks, `..`) outside the model directory."""
    path, root = Path(model_dir) / name, Path(model_dir).resolve()
    real = path.resolve()
    if not real.is_relative_to(root):
        raise IntegrityError(f"{path} resolves to {real}, outside the model directory {root}: refusing to read it")
    if not real.is_file():
        raise IntegrityError(f"{path} is missing or not a file")
    return real


def read_manifest(model_dir: Path, pin: str | None = None) -> dict[str, str]:
    """checksums.json as {relative path: sha256}; with `pin` (the registry's MANIFEST_TAG) its own sha256
    must match, so a file swapped together with a rewritten manifest is caught too."""
    path = Path(model_dir) / CHECKSUM_FILE
    if not path.exists():
        raise IntegrityError(f"{path} is missing: refusing to load an export without checksums")
    data = _inside(model_dir, CHECKSUM_FILE).read_bytes()
    if pin is not None and hashlib.sha256(data).hexdigest() != pin:
        raise IntegrityError(
            f"{path}: sha256 {hashlib.sha256(data).hexdigest()[:16]}… does not match the registry "
            f"tag {MANIFEST_TAG}={pin[:16]}…; the manifest was rewritten after registration"
        )
    try:
        recorded = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(recorded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in recorded.items()
    ):
        raise IntegrityError(f"{path}: expected an object of file -> sha256 hex digest")
    return recorded


def read_verified(model_dir: Path, recorded: dict[str, str], name: str) -> bytes:
    """The bytes of `name`, read once and checked against the manifest entry; IntegrityError otherwise."""
    if name not in recorded:
        raise IntegrityError(
            f"{name} has no checksum in {Path(model_dir) / CHECKSUM_FILE}; re-export the model with `stilts export`"
        )
    data = _inside(model_dir, name).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded[name]:
        raise IntegrityError(
            f"{Path(model_dir) / name}: sha256 {actual[:16]}… does not match the exported "
            f"{recorded[name][:16]}…; the file was modified or corrupted after export"
        )
    return data


def verify_checksums(model_dir: Path, names: list[str] | None = None, pin: str | None = None) -> dict[str, str]:
    """Recompute the sha256 of the listed files (default: all in checksums.json); raise IntegrityError
    naming the first file that is missing, outside the directory or different."""
    recorded = read_manifest(model_dir, pin)
    for name in names if names is not None else list(recorded):
        read_verified(model_dir, recorded, name)
    return recorded


def verify_registry_tags(model_dir: Path, tags: dict[str, str]) -> None:
    """The registry's `sha256.<file>` tags (written at export, outside the model's own files) must match
    both checksums.json and the files themselves: a swapped file *and* manifest is caught too."""
    recorded = verify_checksums(model_dir, pin=tags.get(MANIFEST_TAG))
    for name, digest in recorded.items():
        tag = tags.get(f"sha256.{Path(name).name}")
        if name.endswith(".onnx") and tag != digest:
            raise IntegrityError(
                f"{Path(model_dir) / name}: sha256 {digest[:16]}… does not match the registry tag "
                f"sha256.{Path(name).name}={str(tag)[:16]}…"
            )


def check_meta(meta: object, path: Path) -> dict:
    """stilts_onnx.json must hold every field the server uses, of the right type: a clear error, not a
    KeyError at start-up or a wrong answer later."""

    def bad(field: str, want: str):
        return IntegrityError(f"{path}: field {field!r} must be {want}")

    if not isinstance(meta, dict):
        raise IntegrityError(f"{path}: expected a JSON object")
    labels = meta.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise bad("labels", "a list of at least two distinct non-empty strings")
    if not {"entailment", "contradiction"} <= set(labels):
        raise bad("labels", "a list holding 'entailment' and 'contradiction'")
    for field, least in (("max_length", 1), ("pad_id", 0)):
        value = meta.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise bad(field, f"an integer >= {least}")
    if not isinstance(meta.get("pad_token"), str) or not meta["pad_token"]:
        raise bad("pad_token", "a non-empty string")
    variants = meta.get("variants")
    if (
        not isinstance(variants, dict)
        or not variants
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in variants.items())
    ):
        raise bad("variants", "a non-empty object of variant -> file")
    if not isinstance(meta.get("languages", []), list):
        raise bad("languages", "a list")
    return meta


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
    def load(
        cls,
        model_dir: str | Path,
        variant: str = "fp32",
        threads: int | None = None,
        spinning: bool = False,
        pin: str | None = None,
    ) -> "NLIEngine":
        """`spinning`: let onnxruntime's idle threads spin for the next call. Off by default: a server's
        event loop shares the cores, and spinning threads starve it (benchmarks/serving.py). `pin`: the
        registry's sha256 of checksums.json (None for a bare directory, which carries no pin)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        meta_path = model_dir / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{model_dir} is not a stilts ONNX export ({META_FILE} missing)")
        recorded = read_manifest(model_dir, pin)
        try:
            meta = json.loads(read_verified(model_dir, recorded, META_FILE))
        except (ValueError, RecursionError) as exc:
            raise IntegrityError(f"{meta_path}: not valid JSON ({exc})") from None
        check_meta(meta, meta_path)
        if variant not in meta["variants"]:
            raise ValueError(f"unknown variant {variant!r}; this export has {', '.join(meta['variants'])}")
        graph = read_verified(model_dir, recorded, meta["variants"][variant])
        tokenizer_json = read_verified(model_dir, recorded, TOKENIZER_FILE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("STILTS_ORT_THREADS", "0"))
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        tokenizer.enable_truncation(meta["max_length"], strategy="longest_first")
        tokenizer.enable_padding(pad_id=meta["pad_id"], pad_token=meta["pad_token"])
        return cls(session, tokenizer, tuple(meta["labels"]), meta["max_length"], meta, variant)

    def encode(self, premises: list[str], hypotheses: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(list(zip(premises, hypotheses)))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def logits(self, premises: list[str], hypotheses: list[str], batch_size: int = 64) -> np.ndarray:
        if len(premises) != len(hypotheses):
            raise ValueError(f"{len(premises)} premises but {len(hypotheses)} hypotheses")
        out = [
            self.session.run(["logits"], self.encode(premises[i : i + batch_size], hypotheses[i : i + batch_size]))[0]
            for i in range(0, len(premises), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(self, premises: list[str], hypotheses: list[str], batch_size: int = 64) -> list[dict]:
        probs = softmax(self.logits(premises, hypotheses, batch_size))
        return [
            {"label": self.labels[int(p.argmax())], "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}}
            for p in probs
        ]
