"""One shared XLM-R encoder with a head per task kind; heads are shared by name.

The NLI head serves mnli, anli and xnli (as in jiant, heads are keyed by name, not by task). Head
modules are transformers' own where one exists, with the same parameter names, so the target
model converts to an `XLMRobertaForSequenceClassification` directory without renaming tricks, and
the MLM head is the `XLMRobertaForMaskedLM` one (tied to the input embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification, XLMRobertaModel
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaClassificationHead, XLMRobertaLMHead

from stilts_mlflow.mlm import LanguageVocab, language_softmax_loss
from stilts_mlflow.presets import ModelConfig
from stilts_mlflow.tasks.spec import NLI_LABELS


@dataclass(frozen=True)
class HeadSpec:
    name: str
    kind: str  # classification | span_qa | multiple_choice | tagging | mlm
    num_labels: int = 0


def encoder_config(cfg: ModelConfig, vocab_size: int) -> XLMRobertaConfig:
    """A small XLM-R architecture for offline presets (ids as XLM-R: <s>=0, <pad>=1, </s>=2)."""
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length + 2 + 1,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


class SpanHead(nn.Module):
    """Start/end logits per token, as XLMRobertaForQuestionAnswering's qa_outputs."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.qa_outputs(hidden)  # (batch, seq, 2)


class ChoiceHead(nn.Module):
    """One score per (context, choice) sequence from its <s> state."""

    def __init__(self, config: XLMRobertaConfig):
        super().__init__()
        self.scorer = XLMRobertaClassificationHead(_with_labels(config, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.scorer(hidden).squeeze(-1)


class TaggingHead(nn.Module):
    def __init__(self, config: XLMRobertaConfig, num_labels: int):
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


def copy_encoder(src: XLMRobertaModel, dst: XLMRobertaModel) -> None:
    """Copy encoder weights; only the pooler (which we never use) may be absent on either side."""
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    bad = [k for k in list(missing) + list(unexpected) if not k.startswith("pooler")]
    if bad:
        raise ValueError(f"encoder weights do not match: missing {missing}, unexpected {unexpected}")


def _with_labels(config: XLMRobertaConfig, n: int) -> XLMRobertaConfig:
    new = XLMRobertaConfig.from_dict(config.to_dict())
    new.num_labels = n
    return new


class MultiTaskModel(nn.Module):
    def __init__(self, config: XLMRobertaConfig, heads: list[HeadSpec]):
        super().__init__()
        self.config = config
        self.roberta = XLMRobertaModel(config, add_pooling_layer=False)
        self.heads = nn.ModuleDict()
        self.specs: dict[str, HeadSpec] = {}
        # Set for training with the language softmax (mlm.py); not a weight: never saved.
        self.mlm_vocab: LanguageVocab | None = None
        for spec in heads:
            self.add_head(spec)

    def add_head(self, spec: HeadSpec) -> None:
        if spec.name in self.specs:
            if self.specs[spec.name] != spec:
                raise ValueError(f"head {spec.name!r} already exists as {self.specs[spec.name]}, not {spec}")
            return
        cfg = self.config
        if spec.kind == "classification":
            head: nn.Module = XLMRobertaClassificationHead(_with_labels(cfg, spec.num_labels))
        elif spec.kind == "span_qa":
            head = SpanHead(cfg)
        elif spec.kind == "multiple_choice":
            head = ChoiceHead(cfg)
        elif spec.kind == "tagging":
            head = TaggingHead(cfg, spec.num_labels)
        elif spec.kind == "mlm":
            head = XLMRobertaLMHead(cfg)
            head.decoder.weight = self.roberta.embeddings.word_embeddings.weight  # tied, as in XLM-R
        else:
            raise ValueError(f"unknown head kind {spec.kind!r}")
        self.heads[spec.name] = head
        self.specs[spec.name] = spec

    def forward(
        self,
        head: str,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(loss or None, logits). Multiple choice takes (batch, choices, seq) inputs."""
        kind = self.specs[head].kind
        shape = input_ids.shape
        if kind == "multiple_choice":
            input_ids, attention_mask = input_ids.reshape(-1, shape[-1]), attention_mask.reshape(-1, shape[-1])
        hidden = self.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if kind == "mlm" and labels is not None:  # score masked positions only (~7x less work)
            keep = labels != -100
            if self.mlm_vocab is not None and "lang" in extra:  # each against its own language's tokens
                lm = self.heads[head]
                states = lm.layer_norm(F.gelu(lm.dense(hidden[keep])))
                rows = extra["lang"][:, None].expand_as(labels)[keep]
                return language_softmax_loss(
                    states, lm.decoder.weight, lm.decoder.bias, labels[keep], rows, self.mlm_vocab
                ), None
            logits = self.heads[head](hidden[keep])
            return F.cross_entropy(logits, labels[keep]), logits
        logits = self.heads[head](hidden)
        if kind == "multiple_choice":
            logits = logits.view(shape[0], shape[1])
        if labels is None and "start_positions" not in extra:
            return None, logits
        if kind == "span_qa":
            start, end = logits[..., 0], logits[..., 1]
            loss = (F.cross_entropy(start, extra["start_positions"]) + F.cross_entropy(end, extra["end_positions"])) / 2
        elif kind == "tagging":
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        else:
            loss = F.cross_entropy(logits, labels)
        return loss, logits

    # --- conversions to and from transformers' own classes -----------------------------------
    def load_encoder_from(self, pretrained: XLMRobertaForMaskedLM) -> None:
        """Take the encoder (and the MLM head, if we have one) from an XLMRobertaForMaskedLM."""
        copy_encoder(pretrained.roberta, self.roberta)
        if "mlm" in self.heads:
            self.heads["mlm"].load_state_dict(pretrained.lm_head.state_dict())

    def to_masked_lm(self) -> XLMRobertaForMaskedLM:
        out = XLMRobertaForMaskedLM(self.config)
        copy_encoder(self.roberta, out.roberta)
        if "mlm" in self.heads:
            out.lm_head.load_state_dict(self.heads["mlm"].state_dict())
        out.tie_weights()
        return out

    def to_sequence_classification(
        self, head: str = "nli", labels: tuple[str, ...] = NLI_LABELS
    ) -> XLMRobertaForSequenceClassification:
        """The target model as transformers' class (label order entailment, neutral, contradiction)."""
        cfg = _with_labels(self.config, len(labels))
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {lab: i for i, lab in enumerate(labels)}
        out = XLMRobertaForSequenceClassification(cfg)
        copy_encoder(self.roberta, out.roberta)
        out.classifier.load_state_dict(self.heads[head].state_dict())
        return out

    @classmethod
    def from_sequence_classification(cls, path: str | Path, head: str = "nli") -> MultiTaskModel:
        """Read an XLMRobertaForSequenceClassification directory back (what evaluate and export use)."""
        clf = XLMRobertaForSequenceClassification.from_pretrained(str(path))
        model = cls(clf.config, [HeadSpec(head, "classification", clf.config.num_labels)])
        copy_encoder(clf.roberta, model.roberta)
        model.heads[head].load_state_dict(clf.classifier.state_dict())
        return model

    def save_sequence_classification(self, out_dir: str | Path, tokenizer, head: str = "nli") -> Path:
        model = self.to_sequence_classification(head)
        model.save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
        return Path(out_dir)
