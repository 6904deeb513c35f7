"""results.json -> the markdown tables README shows, each goal next to what was measured."""

from __future__ import annotations

GOALS = {
    "training": 1.3,
    "mlm_softmax": 1.5,
    "onnx_fp32": 1.0,
    "onnx_fp32_batch1": 2.0,
    "onnx_int8": 2.5,
    "serving": 3.0,
    "server_over_engine": 0.8,
    "p99_over_p50": 2.0,
}


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _machine(m: dict) -> list[str]:
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), {m['memory_gib']} GiB, "
        f"{'CUDA' if m['cuda'] else 'no GPU'}; measured fp32 matmul peak {m['matmul_peak_gflops']} GFLOP/s. "
        f"Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
        f"onnxruntime {m['onnxruntime']}, mlflow {m['mlflow']}.",
        "",
    ]


def _spread(row: dict) -> str:
    """The range of the per-repeat ratios behind a median, when there was more than one repeat."""
    ratios = row.get("speedup_per_repeat", [])
    return f", {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)}" if len(ratios) > 1 else ""


def _training(rows: list[dict]) -> list[str]:
    out = [
        "### Training: our loop vs Hugging Face Trainer (same model, data, hyperparameters)",
        "",
        "| case | steps x batch | ours ex/s | Trainer ex/s | speed-up, median (goal >= 1.3x) | ours MFU | Trainer MFU "
        "| Trainer torch_compile ex/s (second half) | ours vs compiled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.get("trainer_compiled")
        compiled = (
            f"{c['examples_per_s']:.0f} ({c['second_half_examples_per_s']:.0f}) | {r['speedup_vs_trainer_compiled']:.2f}x"
            if c
            else "- | -"
        )
        out.append(
            f"| {r['case']} | {r['steps']} x {r['batch_size']} | {r['ours']['examples_per_s']:.0f} | "
            f"{r['trainer']['examples_per_s']:.0f} | {r['speedup_vs_trainer']:.2f}x "
            f"({_met(r['speedup_vs_trainer'] >= GOALS['training'])}){_spread(r)} | {100 * r['ours']['mfu']:.1f}% | "
            f"{100 * r['trainer']['mfu']:.1f}% | {compiled} |"
        )
    return out + [""]


def _inference(models: list[dict]) -> list[str]:
    out = [
        "### Inference: torch eager vs ONNX (sequence 128, ms per batch)",
        "",
        "| model | batch | torch eager | ONNX fp32 | ONNX int8 | fp32 speed-up (goal >= 1x, >= 2x at 1) | "
        "int8 speed-up (goal >= 2.5x at 32 on xlmr-base-sized) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for r in m["by_batch"]:
            int8_goal_here = r["batch"] == 32 and m["model"].startswith("xlmr-base")
            fp32_goal = GOALS["onnx_fp32_batch1"] if r["batch"] == 1 else GOALS["onnx_fp32"]
            fp32 = f"{r['onnx_fp32_speedup']:.2f}x ({_met(r['onnx_fp32_speedup'] >= fp32_goal)})"
            int8 = f"{r['onnx_int8_speedup']:.2f}x" + (
                f" ({_met(r['onnx_int8_speedup'] >= GOALS['onnx_int8'])})" if int8_goal_here else ""
            )
            out.append(
                f"| {m['model']} | {r['batch']} | {r['torch_eager_ms']:.1f} | {r['onnx_fp32_ms']:.1f} | "
                f"{r['onnx_int8_ms']:.1f} | {fp32} | {int8} |"
            )
    return out + [""]


def _serving(s: dict) -> list[str]:
    out = [
        "### Serving: serving/ vs `mlflow models serve` (same ONNX model, loopback)",
        "",
        "| server | concurrency | requests/s | p50 ms | p99 ms | p99/p50 | errors | client |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        out.append(
            f"| {r['server']} | {r['concurrency']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['p99_ms'] / r['p50_ms']:.2f} | {r['errors']} | {r['client']} |"
        )
    out += [
        "",
        f"At concurrency 32: throughput {s['throughput_ratio_at_c32']:.2f}x `mlflow models serve` "
        f"(goal >= 3x: {_met(s['throughput_ratio_at_c32'] >= GOALS['serving'])}); our p99/p50 "
        f"{s['p99_over_p50_at_c32']:.2f} (goal <= 2: {_met(s['p99_over_p50_at_c32'] <= GOALS['p99_over_p50'])}). "
        f"`mlflow models serve` ran with its default {s['mlflow_workers']} worker(s).",
        "",
    ]
    if "over_h11_at_c32" in s:  # results written before the parser comparison have none
        out += [
            f"serving/ parses HTTP with {s['parser']}: {s['over_h11_at_c32']:.2f}x its throughput with h11 at concurrency 32.",
            "",
        ]
    if "bare_engine" in s:  # results written before the engine baseline have none
        e = s["bare_engine"]
        out += [
            f"Bare engine (the export's `NLIEngine.logits` in a loop, no HTTP) at the server's mean batch of "
            f"{e['batch']} pairs: {e['pairs_per_s']:.0f} pairs/s; the server at concurrency 32 reaches "
            f"{s['server_over_engine_at_c32']:.2f} of it "
            f"(goal >= {GOALS['server_over_engine']}: {_met(s['server_over_engine_at_c32'] >= GOALS['server_over_engine'])}).",
            "",
        ]
    return out


def _mlm_softmax(r: dict) -> list[str]:
    ratios = r["speedup_per_repeat"]
    spread = f", {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)}" if len(ratios) > 1 else ""
    return [
        "### MLM pretraining: language softmax vs full softmax (tiny preset, our loop, 15-language corpus)",
        "",
        "| steps x batch | vocabulary | full steps/s | language steps/s | speed-up, median (goal >= 1.5x) |",
        "|---|---|---|---|---|",
        f"| {r['steps']} x {r['batch_size']} | {r['vocab']} | {r['full']['steps_per_s']:.1f} | "
        f"{r['language']['steps_per_s']:.1f} | {r['speedup']:.2f}x ({_met(r['speedup'] >= GOALS['mlm_softmax'])})"
        f"{spread} |",
        "",
    ]


def _study(s: dict) -> list[str]:
    out = [
        f"### Study cost ({s['preset']} preset, k = 0 pipelines, fresh tracking store each)",
        "",
        "| pipelines | wall s |",
        "|---|---|",
    ]
    out += [f"| {r['pipelines']} | {r['seconds']:.1f} |" for r in s["rows"]]
    rerun = s["rerun"]
    out += [
        "",
        f"Linear fit: {s['fixed_seconds']:.1f} s + {s['seconds_per_pipeline']:.1f} s per pipeline "
        f"(r² = {s['r_squared']:.3f}). Rerun of the {rerun['pipelines']}-pipeline study: {rerun['seconds']:.1f} s "
        f"({100 * rerun['share_of_first_run']:.0f}% of its first run), {rerun['reused']} of "
        f"{rerun['pipelines']} pipelines reused.",
        "",
    ]
    if "backends" in s:
        b = s["backends"]
        out += [
            f"The {b['pipelines']}-pipeline study by where its children run (fresh store each): "
            + ", ".join(f"{name} {sec:.1f} s" for name, sec in b["seconds"].items())
            + f"; worker pool {b['pool_speedup_vs_local']:.2f}x the local backend's speed, "
            f"{b['pool_speedup_vs_sequential']:.2f}x one after another.",
            "",
        ]
    return out


def _ray(r: dict) -> list[str]:
    if "skipped" in r:
        return [f"### Ray backend overhead: skipped ({r['skipped']})", ""]
    return [
        f"### Ray backend overhead ({r['preset']} preset, {r['pipelines']} k = 0 pipelines, 2 at a time, one "
        "`mlflow server` on loopback)",
        "",
        "| children run by | wall s |",
        "|---|---|",
        f"| in-process worker pool, 2 workers | {r['pool_x2_seconds']:.1f} |",
        f"| `--backend ray`, two-node local cluster (1 CPU each) | {r['ray_x2_seconds']:.1f} |",
        "",
        f"Ray / pool: {r['ray_over_pool']:.2f}x ({r['ray_overhead_seconds_per_pipeline']:+.1f} s per pipeline). "
        f"Starting the cluster (apart, once per cluster): {r['cluster_start_seconds']:.1f} s. Rerun on Ray: "
        f"{r['ray_rerun']['seconds']:.1f} s, {r['ray_rerun']['reused']} of {r['pipelines']} pipelines reused.",
        "",
    ]


def markdown(results: dict) -> str:
    lines = [f"## Benchmarks{' (--quick)' if results.get('quick') else ''}, {results['started']}", ""]
    lines += _machine(results["machine"])
    if "tiny_model" in results:
        lines += [f"Tiny model: {results['tiny_model']}.", ""]
    for name, render in (
        ("training", _training),
        ("mlm_softmax", _mlm_softmax),
        ("inference", _inference),
        ("serving", _serving),
        ("study", _study),
        ("ray", _ray),
    ):
        if name in results:
            lines += render(results[name])
    lines.append(f"Total {results['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
