"""The study's report: figures, report.md, report.html and summary.json, all from one Analysis, and the
calibration of its statistics (calibration.md, calibration.json) where the study has one."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from stilts_mlflow.scaling.analysis import MODELS, Analysis
from stilts_mlflow.scaling.simulate import Calibration


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
        ax.set(
            xlabel="effect of the task against an average task of the same size (joint model, 95% CI)",
            title="task attribution",
        )
        out["task_attribution.png"] = fig
    for f in out.values():
        f.tight_layout()
    return out


def _num(x: float | None, spec: str) -> str:
    return "n/a" if x is None or x != x else format(x, spec)  # nan: the design cannot estimate it


def power_lines(analysis: Analysis) -> list[str]:
    p = analysis.power
    if not p:
        return []
    fmt = _num
    return [
        "",
        "## What this design could detect (80% power, 5% level, from the measured noise)",
        "",
        "| effect | minimum detectable | standard error | residual df |",
        "|---|---|---|---|",
        f"| slope per task | ±{fmt(p['slope'], '.4f')} | {fmt(p['se_slope'], '.4f')} | {p['df_line']} |",
        f"| curvature per task² | ±{fmt(p['curvature'], '.5f')} (the middle {fmt(p['bend'], '.3f')} off the "
        f"straight line) | {fmt(p['se_curvature'], '.5f')} | {p['df_quadratic']} |",
    ]


def calibration_lines(c: Calibration | None) -> list[str]:
    if c is None:
        return []
    d = c.to_dict()
    fp = ", ".join(f"{v} {r:.3f}" for v, r in d["false_positive_under_flat"].items())
    cov = ", ".join(f"{kind} {v['all']:.3f}" for kind, v in d["coverage"].items())
    mde = ", ".join(f"{name} {r:.2f}" for name, r in d["power"].items() if name.endswith("@mde"))
    return [
        "",
        "## Calibration (simulated studies of this design, this noise)",
        "",
        f"{c.studies} studies per planted truth, drawn with the noise measured on {c.noise['source']}, put "
        "through this analysis (calibration.md has the full table):",
        "",
        f"- flat truth, share given each verdict: {fp}; any verdict {d['false_positive_any']:.3f}",
        f"- coverage of the 95% intervals: {cov}",
        f"- power at the minimum detectable curvature: {mde}",
    ]


def markdown(
    analysis: Analysis, title: str, synthetic: bool, runs: list[dict] = (), calibration: Calibration | None = None
) -> str:
    lines = [f"# {title}", ""]
    if synthetic:
        lines += ["**Synthetic world**: these numbers come from the offline synthetic languages, not real XNLI.", ""]
    statement = analysis.power.get("statement")
    lines += [
        f"**Verdict: {analysis.verdict}**" + (f" — {statement}." if statement else "."),
        "",
        *[f"- {e}" for e in analysis.evidence],
        *power_lines(analysis),
        *calibration_lines(calibration),
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
            "## Task attribution (each task against an average task of the same size)",
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
    calibration: Calibration | None = None,
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
    md = markdown(analysis, title, synthetic, runs, calibration)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(html_page(md, images, title))
    summary = {
        "synthetic": synthetic,
        **analysis.to_dict(),
        "per_language": {str(k): v for k, v in per_language.items()},
        "runs": runs,
    }
    names = ["report.md", "report.html", "summary.json"]
    if calibration is not None:
        summary["calibration"] = calibration.to_dict()
        (out / "calibration.md").write_text(calibration.markdown())
        (out / "calibration.json").write_text(json.dumps(calibration.to_dict(), indent=1))
        names += ["calibration.md", "calibration.json"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    paths.update({n: out / n for n in names})
    return paths
