"""The study's report: figures, report.md, report.html and summary.json, all from one Analysis."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from stilts_mlflow.scaling.analysis import MODELS, Analysis


def figures(analysis: Analysis, per_language: dict[int, dict[str, float]], title: str) -> dict[str, Any]:
    """name -> matplotlib figure: the curve with its CI band and fits, marginal gains, k x language, tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    ks = sorted(analysis.curve)
    mean = np.array([analysis.curve[k].mean for k in ks])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.fill_between(
        ks,
        [analysis.curve[k].low for k in ks],
        [analysis.curve[k].high for k in ks],
        alpha=0.25,
        label="95% bootstrap CI",
    )
    ax.plot(ks, mean, "o-", color="black", label="mean over subsets and seeds")
    grid = np.linspace(min(ks), max(ks), 100)
    for fit in analysis.fits:
        ax.plot(
            grid, MODELS[fit.name][0](grid, *fit.params.values()), "--", lw=1, label=f"{fit.name} (AIC {fit.aic:.1f})"
        )
    ax.set(
        xlabel="number of intermediate tasks k",
        ylabel="XNLI test accuracy (15-language average)",
        title=f"{title}: {analysis.verdict}",
    )
    ax.legend(fontsize=7)
    out["curve.png"] = fig

    fig, ax = plt.subplots(figsize=(7, 3.5))
    gk = sorted(analysis.gains)
    g = [analysis.gains[k] for k in gk]
    ax.bar(gk, [x.mean for x in g], yerr=[[x.mean - x.low for x in g], [x.high - x.mean for x in g]], capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="k", ylabel="marginal gain Δ(k)", title="gain from the k-th task (95% CI)")
    out["marginal_gains.png"] = fig

    if per_language:
        langs = list(next(iter(per_language.values())))
        rows = sorted(per_language)
        matrix = np.array([[per_language[k][lang] for lang in langs] for k in rows])
        fig, ax = plt.subplots(figsize=(8, 4))
        im = ax.imshow(matrix, aspect="auto", cmap="viridis")
        ax.set(
            xticks=range(len(langs)),
            xticklabels=langs,
            yticks=range(len(rows)),
            yticklabels=rows,
            xlabel="language",
            ylabel="k",
            title="XNLI test accuracy by k and language",
        )
        fig.colorbar(im, ax=ax)
        out["k_by_language.png"] = fig

    if analysis.attribution:
        tasks = sorted(analysis.attribution, key=lambda t: analysis.attribution[t].mean)
        a = [analysis.attribution[t] for t in tasks]
        fig, ax = plt.subplots(figsize=(7, 3.8))
        ax.barh(tasks, [x.mean for x in a], xerr=[[x.mean - x.low for x in a], [x.high - x.mean for x in a]], capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set(xlabel="effect of the task's presence on XNLI accuracy (OLS, 95% CI)", title="task attribution")
        out["task_attribution.png"] = fig
    for f in out.values():
        f.tight_layout()
    return out


def markdown(analysis: Analysis, title: str, synthetic: bool, runs: list[dict] = ()) -> str:
    lines = [f"# {title}", ""]
    if synthetic:
        lines += ["**Synthetic world**: these numbers come from the offline synthetic languages, not real XNLI.", ""]
    lines += [
        f"**Verdict: {analysis.verdict}.**",
        "",
        *[f"- {e}" for e in analysis.evidence],
        "",
        "## XNLI accuracy by number of intermediate tasks",
        "",
        "| k | runs | mean | 95% CI |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {c.n} | {c.mean:.4f} | {c.low:.4f} – {c.high:.4f} |" for k, c in sorted(analysis.curve.items())]
    lines += ["", "## Marginal gain Δ(k)", "", "| k | Δ(k) | 95% CI |", "|---|---|---|"]
    lines += [f"| {k} | {g.mean:+.4f} | {g.low:+.4f} – {g.high:+.4f} |" for k, g in sorted(analysis.gains.items())]
    lines += ["", "## Fits (best AIC first)", "", "| model | parameters | AIC | BIC |", "|---|---|---|---|"]
    lines += [
        f"| {f.name} | {', '.join(f'{n}={v:.4g}' for n, v in f.params.items())} | {f.aic:.1f} | {f.bic:.1f} |"
        for f in analysis.fits
    ]
    if analysis.attribution:
        lines += [
            "",
            "## Task attribution (OLS on task presence)",
            "",
            "| task | effect | 95% CI | runs with it |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {t} | {a.mean:+.4f} | {a.low:+.4f} – {a.high:+.4f} | {a.n} |"
            for t, a in sorted(analysis.attribution.items(), key=lambda kv: -kv[1].mean)
        ]
    restarted = [r for r in runs if r.get("target_attempts", 1) > 1]
    if runs:
        lines += [
            "",
            "## Target restarts",
            "",
            f"{len(restarted)} of {len(runs)} target phases stayed on the plateau and were restarted with "
            "another seed (the best attempt by dev score is kept).",
        ]
        lines += [
            f"- k = {r['k']} {'-'.join(r['subset']) or 'none'}, seed {r['seed']}: {r['target_attempts']} attempts"
            for r in restarted
        ]
    return "\n".join(lines) + "\n"


def html_page(md: str, images: dict[str, bytes], title: str) -> str:
    """A self-contained page: the markdown's text and tables, and the figures inlined."""
    body = []
    table: list[str] = []

    def flush():
        if table:
            rows = [r.strip("|").split("|") for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [
                "<tr>"
                + "".join(
                    f"<{'th' if i == 0 else 'td'}>{html.escape(c.strip())}</{'th' if i == 0 else 'td'}>" for c in r
                )
                + "</tr>"
                for i, r in enumerate(rows)
            ]
            body.append("<table>" + "".join(cells) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line.replace('**', ''))}</p>")
    flush()
    for name, png in images.items():
        body.append(
            f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        )
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"


def write(
    analysis: Analysis,
    per_language: dict[int, dict[str, float]],
    runs: list[dict],
    out: Path,
    title: str,
    synthetic: bool,
) -> dict[str, Path]:
    """Write every report file under `out`; returns name -> path (figures included)."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    images = {}
    for name, fig in figures(analysis, per_language, title).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        images[name] = buf.getvalue()
        (out / name).write_bytes(images[name])
        paths[name] = out / name
    md = markdown(analysis, title, synthetic, runs)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(html_page(md, images, title))
    summary = {
        "synthetic": synthetic,
        **analysis.to_dict(),
        "per_language": {str(k): v for k, v in per_language.items()},
        "runs": runs,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    paths.update({n: out / n for n in ("report.md", "report.html", "summary.json")})
    return paths
