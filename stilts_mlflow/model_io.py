"""Phase models on disk: a multi-task model (encoder, heads and their specs) built from an init and saved."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from accelerate.utils import set_seed
from safetensors.torch import load_model, save_model
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

from stilts_mlflow.context import Context
from stilts_mlflow.model import HeadSpec, MultiTaskModel, encoder_config
from stilts_mlflow.tasks import get_task

HEADS_FILE = "heads.json"


def head_for(task: str, ctx: Context) -> HeadSpec:
    spec = get_task(task)
    n = len(ctx.encoded(task, "train").labels) if spec.kind in ("classification", "tagging") else 0
    return HeadSpec(spec.head, spec.kind, n)


def build_model(init: str | None, heads: list[HeadSpec], ctx: Context, seed: int) -> MultiTaskModel:
    """init: None (random encoder), an XLMRobertaForMaskedLM dir or hub name, or a phase output dir.
    New weights (a random encoder, new heads) depend only on `seed`, never on what ran before."""
    set_seed(seed)
    if init is None:
        return MultiTaskModel(encoder_config(ctx.preset.model, len(ctx.tokenizer)), heads)
    path = Path(init)
    if (path / HEADS_FILE).exists():  # an intermediate-phase output: encoder plus trained heads
        saved = [HeadSpec(**h) for h in json.loads((path / HEADS_FILE).read_text())]
        model = MultiTaskModel(XLMRobertaConfig.from_pretrained(str(path)), saved)
        load_model(model, str(path / "model.safetensors"))
        for h in heads:
            model.add_head(h)
        return model
    pretrained = XLMRobertaForMaskedLM.from_pretrained(init)
    if pretrained.config.vocab_size < len(ctx.tokenizer):
        raise ValueError(
            f"model {init} has {pretrained.config.vocab_size} embeddings but the tokenizer "
            f"{ctx.tokenizer_dir} has {len(ctx.tokenizer)} tokens"
        )
    model = MultiTaskModel(pretrained.config, heads)
    model.load_encoder_from(pretrained)
    return model


def save_multitask(model: MultiTaskModel, tokenizer, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(out))
    save_model(model, str(out / "model.safetensors"))
    (out / HEADS_FILE).write_text(json.dumps([asdict(s) for s in model.specs.values()], indent=1))
    tokenizer.save_pretrained(str(out))
    return out
