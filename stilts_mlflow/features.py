"""Records -> token ids per task kind, and dynamic-padding collation into tensors.

As in Hugging Face's run_xnli / run_qa / run_swag / run_ner examples: pairs are encoded as
`<s> A </s></s> B </s>`, span answers become token start/end positions (unanswerable and truncated
answers point at `<s>`), multiple choice encodes one (context + question, choice) sequence per choice,
and tagging labels the first piece of each word (-100 elsewhere). MLM masking is BERT's 80/10/10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stilts_mlflow.tasks.records import Record
from stilts_mlflow.tasks.spec import TaskSpec

Feature = dict[str, Any]


@dataclass(frozen=True)
class Encoded:
    """A task's split as features, with the label names its head predicts."""

    task: TaskSpec
    features: list[Feature]
    labels: tuple[str, ...]  # classification / tagging label names (index = class id)

    def lengths(self) -> list[int]:
        return [f["length"] for f in self.features]


def tag_set(records: list[Record]) -> tuple[str, ...]:
    return tuple(sorted({t for r in records for t in r["tags"]}))


def encode(
    task: TaskSpec, records: list[Record], tokenizer, max_length: int, labels: tuple[str, ...] | None = None
) -> Encoded:
    """Tokenize every record of one task; `labels` fixes the tag inventory (else the task's labels)."""
    kind = task.kind
    labels = tuple(labels or task.labels)
    if kind == "classification":
        enc = tokenizer(
            [r["text_a"] for r in records],
            [r["text_b"] for r in records] if records and records[0]["text_b"] is not None else None,
            truncation=True,
            max_length=max_length,
        )
        index = {lab: i for i, lab in enumerate(labels)}
        feats = [{"input_ids": ids, "labels": index[r["label"]]} for ids, r in zip(enc["input_ids"], records)]
    elif kind == "span_qa":
        feats = [_span_feature(tokenizer, r, max_length) for r in records]
    elif kind == "multiple_choice":
        feats = []
        for r in records:
            first = (r["context"] + " " + r["question"]).strip()
            enc = tokenizer([first] * len(r["choices"]), r["choices"], truncation=True, max_length=max_length)
            feats.append({"input_ids": enc["input_ids"], "labels": r["label"]})
    elif kind == "tagging":
        index = {lab: i for i, lab in enumerate(labels)}
        enc = tokenizer(
            [r["tokens"] for r in records], is_split_into_words=True, truncation=True, max_length=max_length
        )
        feats = []
        for i, r in enumerate(records):
            tags, previous = [], None
            for word in enc.word_ids(i):
                tags.append(-100 if word is None or word == previous else index.get(r["tags"][word], -100))
                previous = word
            feats.append({"input_ids": enc["input_ids"][i], "labels": tags})
    elif kind == "mlm":
        enc = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
        feats = [{"input_ids": ids} for ids in enc["input_ids"]]
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    for f in feats:
        ids = f["input_ids"]
        f["length"] = max(len(x) for x in ids) if ids and isinstance(ids[0], list) else len(ids)
    return Encoded(task, feats, labels)


def _span_feature(tokenizer, r: Record, max_length: int) -> Feature:
    enc = tokenizer(
        r["question"], r["context"], truncation="only_second", max_length=max_length, return_offsets_mapping=True
    )
    start = end = 0  # <s>: no answer (SQuAD 2.0 convention), or the answer was truncated away
    if r["answers"]["text"]:
        a_start = r["answers"]["answer_start"][0]
        a_end = a_start + len(r["answers"]["text"][0])
        seq = enc.sequence_ids()
        for i, (s, e) in enumerate(enc["offset_mapping"]):
            if seq[i] != 1:
                continue
            if s <= a_start < e or (start == 0 and s >= a_start and e <= a_end and e > s):
                start = start or i
            if start and s < a_end <= e:
                end = i
                break
        if not (start and end):
            start = end = 0
    return {"input_ids": enc["input_ids"], "start_positions": start, "end_positions": end}


def collate(
    kind: str,
    feats: list[Feature],
    pad_id: int,
    mask_id: int | None = None,
    vocab_size: int = 0,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest member (dynamic padding)."""
    if kind == "multiple_choice":
        width = max(len(c) for f in feats for c in f["input_ids"])
        ids = torch.full((len(feats), len(feats[0]["input_ids"]), width), pad_id, dtype=torch.long)
        for i, f in enumerate(feats):
            for j, c in enumerate(f["input_ids"]):
                ids[i, j, : len(c)] = torch.tensor(c)
        return {
            "input_ids": ids,
            "attention_mask": (ids != pad_id).long(),
            "labels": torch.tensor([f["labels"] for f in feats]),
        }
    width = max(len(f["input_ids"]) for f in feats)
    ids = torch.full((len(feats), width), pad_id, dtype=torch.long)
    for i, f in enumerate(feats):
        ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
    batch = {"input_ids": ids, "attention_mask": (ids != pad_id).long()}
    if kind == "classification":
        batch["labels"] = torch.tensor([f["labels"] for f in feats])
    elif kind == "span_qa":
        batch["start_positions"] = torch.tensor([f["start_positions"] for f in feats])
        batch["end_positions"] = torch.tensor([f["end_positions"] for f in feats])
    elif kind == "tagging":
        labels = torch.full((len(feats), width), -100, dtype=torch.long)
        for i, f in enumerate(feats):
            labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        batch["labels"] = labels
    elif kind == "mlm":
        batch["input_ids"], batch["labels"] = mask_tokens(ids, mask_id, vocab_size, mlm_probability, generator)
        if "lang_id" in feats[0]:  # stamped by mlm.language_vocab: the language softmax needs each row's language
            batch["lang"] = torch.tensor([f["lang_id"] for f in feats])
    return batch


def mask_tokens(
    ids: torch.Tensor, mask_id: int, vocab_size: int, probability: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: 15% of non-special tokens are predicted; of those 80% <mask>, 10% random, 10% kept.
    Special ids are XLM-R's 0..3 and the mask id."""
    ids = ids.clone()
    special = (ids <= 3) | (ids == mask_id)
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator)
    ids[chosen & (roll < 0.8)] = mask_id
    random_ids = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[random_ids] = torch.randint(4, vocab_size - 1, (int(random_ids.sum()),), generator=generator)
    return ids, labels
