"""How an encoder transfers across languages, on XLM-R's scale.

The transfer ratio of a language is the share of English's margin over chance that it keeps:
r(lang) = (acc(lang) - 1/3) / (acc(en) - 1/3). XLM-R base keeps 0.80 on average over XNLI's 14 other
languages (Conneau et al. 2020, Table 1), from es 0.90 to sw 0.63. `summarize` puts k = 0 pipelines (one
per target seed) and the same pipeline from a random encoder next to that reference: mean r, its Spearman
correlation with XLM-R's per-language r, the weakest language and the seed-to-seed spread.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

CHANCE = 1 / 3
# XLM-R base, zero-shot XNLI test accuracy from English (Conneau et al. 2020, arXiv 1911.02116, Table 1)
XLMR_BASE = {
    "en": 85.8,
    "es": 80.7,
    "fr": 79.7,
    "bg": 79.6,
    "de": 78.7,
    "ru": 78.1,
    "el": 77.5,
    "zh": 76.7,
    "vi": 76.5,
    "th": 74.6,
    "tr": 74.2,
    "ar": 73.8,
    "hi": 72.4,
    "ur": 68.3,
    "sw": 66.5,
}


def ratios(acc: dict[str, float]) -> dict[str, float]:
    """r per non-English language from accuracies (fractions or percentages, as long as both are alike)."""
    scale = 100.0 if acc["en"] > 1 else 1.0
    margin = acc["en"] - CHANCE * scale
    return {lang: (a - CHANCE * scale) / margin for lang, a in acc.items() if lang != "en"}


XLMR_BASE_R = ratios(XLMR_BASE)


def accuracies(metrics: dict[str, float], prefix: str = "test") -> dict[str, float]:
    """Per-language accuracy from a pipeline's metrics (`test/accuracy.<lang>`)."""
    out = {}
    for name, value in metrics.items():
        if name.startswith(f"{prefix}/accuracy."):
            lang = name.split(".", 1)[1]
            if lang not in ("avg", "non_en_avg"):
                out[lang] = value
    return out


def summarize(seeds: dict[int, dict[str, float]], ablation: dict[str, float] | None = None) -> dict:
    """seeds: target seed -> per-language accuracy of the k = 0 pipeline; ablation: the same from a random encoder."""
    langs = [lang for lang in XLMR_BASE if lang != "en"]
    per_seed = {}
    for seed, acc in sorted(seeds.items()):
        r = ratios(acc)
        per_seed[seed] = {
            "en": acc["en"],
            "non_en_avg": float(np.mean([acc[x] for x in langs])),
            "mean_r": float(np.mean([r[x] for x in langs])),
            "r": r,
            "accuracy": acc,
        }
    mean_acc = {lang: float(np.mean([s["accuracy"][lang] for s in per_seed.values()])) for lang in ["en", *langs]}
    mean_r = {lang: float(np.mean([s["r"][lang] for s in per_seed.values()])) for lang in langs}
    rho = spearmanr([mean_r[x] for x in langs], [XLMR_BASE_R[x] for x in langs]).statistic
    non_en = [s["non_en_avg"] for s in per_seed.values()]
    out = {
        "seeds": per_seed,
        "accuracy": mean_acc,
        "r": mean_r,
        "mean_r": float(np.mean(list(mean_r.values()))),
        "min_accuracy": min(mean_acc[x] for x in langs),
        "spearman_rho_vs_xlmr_base": float(rho),
        "non_en_avg_sd": float(np.std(non_en, ddof=1)) if len(non_en) > 1 else float("nan"),
        "xlmr_base": {"r": XLMR_BASE_R, "mean_r": float(np.mean(list(XLMR_BASE_R.values())))},
    }
    if ablation is not None:
        r = ratios(ablation)
        out["random_encoder"] = {"accuracy": ablation, "r": r, "mean_r": float(np.mean([r[x] for x in langs]))}
    return out


def markdown(summary: dict) -> str:
    """The per-language table: accuracy and r, XLM-R base's r beside it, then the headline figures."""
    langs = list(summary["r"])
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [
        f"| language | accuracy (mean of seeds {seeds}) | r | XLM-R base r |",
        "|---|---|---|---|",
        f"| en | {summary['accuracy']['en']:.3f} | 1.00 | 1.00 |",
    ]
    lines += [
        f"| {x} | {summary['accuracy'][x]:.3f} | {summary['r'][x]:.2f} | {summary['xlmr_base']['r'][x]:.2f} |"
        for x in sorted(langs, key=lambda x: -summary["xlmr_base"]["r"][x])
    ]
    lines += [
        "",
        f"- mean r: **{summary['mean_r']:.2f}** (XLM-R base {summary['xlmr_base']['mean_r']:.2f})",
        f"- Spearman rho of per-language r with XLM-R base's: {summary['spearman_rho_vs_xlmr_base']:.2f}",
        f"- weakest language accuracy: {summary['min_accuracy']:.3f}",
        f"- SD of the non-English average over seeds: {summary['non_en_avg_sd']:.4f}",
    ]
    per_seed = "; ".join(
        f"seed {s}: en {v['en']:.3f}, non-en {v['non_en_avg']:.3f}, mean r {v['mean_r']:.2f}"
        for s, v in summary["seeds"].items()
    )
    lines.append(f"- per seed: {per_seed}")
    if "random_encoder" in summary:
        rnd = summary["random_encoder"]
        lines.append(
            f"- random encoder (`--pretrain skip`): en {rnd['accuracy']['en']:.3f}, mean r {rnd['mean_r']:.2f}"
        )
    return "\n".join(lines) + "\n"
