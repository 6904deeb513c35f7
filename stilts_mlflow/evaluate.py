"""Dev metrics for every task kind, and the zero-shot XNLI evaluation over the 15 languages.

Metric names: `<task>/<metric>` for English tasks, `xnli/accuracy.<lang>` plus `.avg`, `.non_en_avg`
and `xnli/en_gap` (English minus the non-English average) for XNLI, `mlm/loss` (mean over languages)
for pretraining. Span F1 is SQuAD's token-overlap F1 over predicted vs gold pieces, with SQuAD 2.0's
null answer (the `<s>` position) when no span scores above it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from stilts_mlflow.features import Encoded, collate
from stilts_mlflow.sampling import eval_batches
from stilts_mlflow.tasks.spec import NLI_LABELS

log = logging.getLogger(__name__)
MAX_ANSWER_TOKENS = 30


@torch.no_grad()
def predict(
    model,
    enc: Encoded,
    pad: int,
    mask: int,
    vocab: int,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[list[Any], float]:
    """Per-example predictions in input order, and the mean loss (MLM: the only output)."""
    was_training = model.training
    model.eval()
    kind = enc.task.kind
    preds: list[Any] = [None] * len(enc.features)
    generator = torch.Generator().manual_seed(seed)  # the same masks at every evaluation
    losses = []
    for index in eval_batches(enc.lengths(), batch_size):
        batch = collate(kind, [enc.features[i] for i in index], pad, mask, vocab, generator=generator)
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, logits = model(enc.task.head, **batch)
        if loss is not None:
            losses.append(loss.item())
        if kind == "span_qa":
            out = [best_span(row[:, 0], row[:, 1], am) for row, am in zip(logits, batch["attention_mask"])]
        elif kind == "tagging":
            out = [(row.argmax(-1), lab) for row, lab in zip(logits, batch["labels"])]
        elif kind == "mlm":
            out = [None] * len(index)
        else:
            out = logits.argmax(-1).tolist()
        for i, p in zip(index, out):
            preds[i] = p
    model.train(was_training)
    return preds, float(np.mean(losses)) if losses else float("nan")


def best_span(start: torch.Tensor, end: torch.Tensor, attention: torch.Tensor) -> tuple[int, int]:
    """Best (start <= end, at most MAX_ANSWER_TOKENS) span, or (0, 0) if the null score wins."""
    n = int(attention.sum())
    s, e = start[1:n].float(), end[1:n].float()
    scores = s[:, None] + e[None, :]
    valid = torch.triu(torch.ones_like(scores, dtype=torch.bool)) & ~torch.triu(
        torch.ones_like(scores, dtype=torch.bool), diagonal=MAX_ANSWER_TOKENS
    )
    scores = scores.masked_fill(~valid, float("-inf"))
    flat = int(scores.argmax())
    i, j = divmod(flat, scores.shape[1])
    if float(start[0] + end[0]) > float(scores[i, j]):
        return 0, 0
    return i + 1, j + 1


def span_f1(pred: tuple[int, int], gold: tuple[int, int]) -> float:
    if pred == (0, 0) or gold == (0, 0):
        return float(pred == gold)
    overlap = max(0, min(pred[1], gold[1]) - max(pred[0], gold[0]) + 1)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / (pred[1] - pred[0] + 1), overlap / (gold[1] - gold[0] + 1)
    return 2 * precision * recall / (precision + recall)


def task_metric(enc: Encoded, preds: list[Any]) -> float:
    kind, feats = enc.task.kind, enc.features
    if kind == "span_qa":
        return float(np.mean([span_f1(p, (f["start_positions"], f["end_positions"])) for p, f in zip(preds, feats)]))
    if kind == "tagging":
        right = total = 0
        for pred, labels in preds:
            keep = labels != -100
            right += int((pred[keep] == labels[keep]).sum())
            total += int(keep.sum())
        return right / max(1, total)
    gold = [f["labels"] for f in feats]
    if enc.task.metric == "f1":
        return float(f1_score(gold, preds, pos_label=1, zero_division=0))
    return float(np.mean([p == g for p, g in zip(preds, gold)]))


def evaluate_tasks(
    model,
    dev_sets: dict[str, dict[str, Encoded]],
    pad: int,
    mask: int,
    vocab: int,
    batch_size: int = 64,
    seed: int = 0,
    device="cpu",
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for task, by_lang in dev_sets.items():
        if task == "mlm":
            losses = [predict(model, enc, pad, mask, vocab, batch_size, seed, device)[1] for enc in by_lang.values()]
            metrics["mlm/loss"] = float(np.mean(losses))
            continue
        if task == "xnli":
            metrics.update(
                xnli_metrics(
                    {
                        lang: predict(model, enc, pad, mask, vocab, batch_size, seed, device)[0]
                        for lang, enc in by_lang.items()
                    },
                    by_lang,
                )[0]
            )
            continue
        for enc in by_lang.values():
            preds, _ = predict(model, enc, pad, mask, vocab, batch_size, seed, device)
            metrics[f"{task}/{enc.task.metric}"] = task_metric(enc, preds)
    return metrics


def xnli_metrics(
    preds: dict[str, list[int]], sets: dict[str, Encoded], prefix: str = "xnli"
) -> tuple[dict[str, float], dict[str, list[list[int]]]]:
    """Accuracy per language, average, non-English average, English gap; confusion matrices."""
    metrics, confusion = {}, {}
    for lang, enc in sets.items():
        gold = [f["labels"] for f in enc.features]
        metrics[f"{prefix}/accuracy.{lang}"] = float(np.mean([p == g for p, g in zip(preds[lang], gold)]))
        confusion[lang] = confusion_matrix(gold, preds[lang], labels=list(range(len(NLI_LABELS)))).tolist()
    accs = {lang: metrics[f"{prefix}/accuracy.{lang}"] for lang in sets}
    if len(accs) > 1:
        metrics[f"{prefix}/accuracy.avg"] = float(np.mean(list(accs.values())))
    others = [a for lang, a in accs.items() if lang != "en"]
    if others:
        metrics[f"{prefix}/accuracy.non_en_avg"] = float(np.mean(others))
        if "en" in accs:
            metrics[f"{prefix}/en_gap"] = accs["en"] - metrics[f"{prefix}/accuracy.non_en_avg"]
    return metrics, confusion


def zero_shot(
    model, sets: dict[str, Encoded], tokenizer, batch_size: int = 64, device="cpu", prefix: str = "test"
) -> tuple[dict[str, float], dict[str, list[list[int]]]]:
    preds = {
        lang: predict(
            model, enc, tokenizer.pad_token_id, tokenizer.mask_token_id, len(tokenizer), batch_size, device=device
        )[0]
        for lang, enc in sets.items()
    }
    return xnli_metrics(preds, sets, prefix=prefix)


def report_table(metrics: dict[str, float], prefix: str = "test") -> dict[str, list]:
    langs = [
        k.split(".", 1)[1]
        for k in metrics
        if k.startswith(f"{prefix}/accuracy.") and k.split(".", 1)[1] not in ("avg", "non_en_avg")
    ]
    return {
        "language": langs + ["avg", "non_en_avg"],
        "accuracy": [round(metrics[f"{prefix}/accuracy.{x}"], 4) for x in langs + ["avg", "non_en_avg"]],
    }


def report_figure(metrics: dict[str, float], confusion: dict[str, list[list[int]]], title: str, prefix: str = "test"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(confusion)
    accs = [metrics[f"{prefix}/accuracy.{lang}"] for lang in langs]
    fig = plt.figure(figsize=(14, 7))
    ax = fig.add_subplot(2, 1, 1)
    ax.bar(langs, accs, color=["tab:red" if lang == "en" else "tab:blue" for lang in langs])
    ax.axhline(1 / 3, color="grey", ls="--", lw=1, label="chance")
    ax.axhline(metrics[f"{prefix}/accuracy.non_en_avg"], color="tab:blue", ls=":", lw=1, label="non-English avg")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper right")
    for i, lang in enumerate(langs):
        sub = fig.add_subplot(2, len(langs), len(langs) + i + 1)
        sub.imshow(np.array(confusion[lang]), cmap="Blues")
        sub.set_title(lang, fontsize=8)
        sub.set_xticks([])
        sub.set_yticks([])
    fig.text(
        0.5,
        0.02,
        "confusion matrices (rows gold, columns predicted: entailment, neutral, contradiction)",
        ha="center",
        fontsize=8,
    )
    return fig
