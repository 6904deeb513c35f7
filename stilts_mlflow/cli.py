"""The `stilts` command line; every MLproject entry point is `python -m stilts_mlflow <command>`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from stilts_mlflow import choices
from stilts_mlflow.presets import PRESETS, DataConfig, get_preset
from stilts_mlflow.sampling import SAMPLERS
from stilts_mlflow.tasks import DataError

log = logging.getLogger("stilts")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def data_config(preset: str, source: str | None, data_dir: str | None, hub_mirror: str | None) -> DataConfig:
    cfg = get_preset(preset).data
    if source:
        cfg = replace(cfg, source=source)
    if data_dir:
        cfg = replace(cfg, local_dir=data_dir)
    if hub_mirror:
        cfg = replace(cfg, hub_mirror=hub_mirror)
    if cfg.source == "local" and not cfg.local_dir:
        raise ValueError("data source 'local' needs a data directory (--data-dir DIR; see README 'Local data format')")
    if cfg.source == "local" and not Path(cfg.local_dir).is_dir():
        raise ValueError(f"--data-dir {cfg.local_dir}: no such directory")
    return cfg


class StiltsGroup(click.Group):
    """Turns user mistakes (bad data, bad values) into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (DataError, ValueError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=StiltsGroup)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """stilts: English intermediate-task training (STILTs) and zero-shot cross-lingual NLI, tracked in MLflow."""
    _setup_logging(verbose)


_preset = click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="tiny",
    show_default=True,
    help="Preset: sizes, model and recipe (smoke for tests, tiny offline default).",
)
_source = click.option(
    "--source",
    type=click.Choice(choices.SOURCES),
    default=None,
    help="Data source; default: the preset's (synthetic for smoke/tiny, hub for xlmr-*).",
)
_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Local data directory (source=local), also where hub presets find CCG files.",
)
_mirror = click.option(
    "--hub-mirror",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory of save_to_disk copies of hub datasets, for machines without hub access.",
)


@main.group()
def data() -> None:
    """Inspect and export the data sets of a preset."""


@data.command("describe")
@_preset
@_source
@_data_dir
@_mirror
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_describe(preset: str, source: str | None, data_dir: str | None, hub_mirror: str | None, as_json: bool):
    """Tasks, kinds, sizes per split and language, and label balance."""
    from stilts_mlflow.data import describe

    info = describe(data_config(preset, source, data_dir, hub_mirror))
    if as_json:
        click.echo(json.dumps(info, indent=1, ensure_ascii=False))
        return
    click.echo(f"source: {info['source']}   data key: {info['key']}")
    click.echo(f"{'task':<14}{'kind':<17}{'split':<7}{'size':>7}  languages  labels")
    for task, entry in info["tasks"].items():
        for split, s in entry["splits"].items():
            sizes = s["size"]
            langs = (
                "en" if list(sizes) == ["en"] else f"{len(sizes)} ({min(sizes.values())}-{max(sizes.values())} each)"
            )
            labels = ", ".join(f"{k}:{v}" for k, v in s["labels"].items())
            click.echo(f"{task:<14}{entry['kind']:<17}{split:<7}{sum(sizes.values()):>7}  {langs:<10} {labels}")


@data.command("export")
@_preset
@_source
@_data_dir
@_mirror
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory to write (replaced).")
def data_export(preset: str, source: str | None, data_dir: str | None, hub_mirror: str | None, out: str):
    """Write the preset's data in the local jsonl format (readable, and reloadable with --source local)."""
    from stilts_mlflow.data import export

    path = export(data_config(preset, source, data_dir, hub_mirror), Path(out))
    log.info("wrote %s", path)


@data.command("tokenizer")
@_preset
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory for the tokenizer.")
def data_tokenizer(preset: str, out: str):
    """Train the preset's XLM-R-style tokenizer (SentencePiece pieces) on its MLM corpus (offline presets)."""
    from stilts_mlflow.data import materialize, train_corpus_tokenizer
    from stilts_mlflow.tasks.loaders import LocalLoader

    cfg = get_preset(preset).data
    if cfg.tokenizer != "train":
        raise ValueError(f"preset {preset} uses the pretrained tokenizer {cfg.tokenizer}; nothing to train")
    train_corpus_tokenizer(cfg, LocalLoader(materialize(cfg)), Path(out))


# --- training phases --------------------------------------------------------------------------------
def _phase_options(f, tasks: str = ""):
    opts = [
        _preset,
        _source,
        _data_dir,
        _mirror,
        click.option(
            "--tasks",
            default=tasks,
            show_default=True,
            help="Comma-separated English intermediate tasks (anli, mnli, qqp, squad, squad_v2, hellaswag, "
            "ccg, cosmosqa, commonsenseqa); empty or 'none' for no intermediate phase.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Seed of the intermediate and target phases.",
        ),
        click.option(
            "--pretrain-seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Seed of MLM pretraining (shared by all pipelines of a study).",
        ),
        click.option(
            "--pretrain",
            "pretrain_mode",
            type=click.Choice(choices.PRETRAIN),
            default="auto",
            show_default=True,
            help="auto: the preset's published encoder (tiny: the shipped "
            "stilts-mini-xlmr), XLM-R (xlmr presets) or pretraining here (smoke); train: pretrain here with "
            "the preset's recipe (reproduces the published encoder); skip: a randomly initialised encoder "
            "(the ablation).",
        ),
        click.option(
            "--sampler",
            type=click.Choice(list(SAMPLERS)),
            default="proportional",
            show_default=True,
            help="Multi-task sampling of intermediate tasks.",
        ),
        click.option(
            "--temperature",
            type=float,
            default=2.0,
            show_default=True,
            help="Temperature T of the temperature sampler (p ~ n^(1/T)).",
        ),
        click.option(
            "--cap",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Examples per task counted by the capped sampler.",
        ),
        click.option(
            "--budget",
            type=click.Choice(choices.BUDGETS),
            default="fixed",
            show_default=True,
            help="fixed: the same intermediate steps for any number of tasks; per-task: steps x tasks.",
        ),
        click.option(
            "--select",
            type=click.Choice(choices.SELECT),
            default="en",
            show_default=True,
            help="Target checkpoint selection: English dev (zero-shot) or dev average over 15 languages.",
        ),
        click.option(
            "--mixed-precision",
            type=click.Choice(choices.MIXED_PRECISION),
            default="no",
            show_default=True,
            help="accelerate mixed precision (GPU).",
        ),
        click.option(
            "--pretrained",
            default=None,
            help="xlmr presets: a local XLM-R directory (save_pretrained, with its tokenizer) instead of the hub name.",
        ),
        click.option(
            "--no-progress",
            is_flag=True,
            envvar="STILTS_NO_PROGRESS",
            help="No progress bars, the libraries' included (also STILTS_NO_PROGRESS=1, which a study's "
            "local-backend children get).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def quiet_libraries() -> None:
    """--no-progress silences the libraries' bars as well: transformers' weight loading and saving (and the
    hub's), MLflow's artifact transfers."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


def _options(kw: dict):
    from stilts_mlflow.options import Options
    from stilts_mlflow.tasks import parse_tasks

    # checked before any work or run starts: a typo leaves no FAILED run behind
    data_config(kw["preset"], kw["source"], kw["data_dir"], kw["hub_mirror"])
    if kw["mixed_precision"] == "fp16":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--mixed-precision fp16 needs a CUDA GPU; none is available (use no or bf16)")
    if kw["no_progress"]:
        quiet_libraries()
    return Options(
        preset=kw["preset"],
        tasks=parse_tasks(kw["tasks"]),
        seed=kw["seed"],
        pretrain_seed=kw["pretrain_seed"],
        sampler=kw["sampler"],
        temperature=kw["temperature"],
        cap=kw["cap"],
        budget=kw["budget"],
        select=kw["select"],
        pretrain=kw["pretrain_mode"],
        mixed_precision=kw["mixed_precision"],
        progress=not kw["no_progress"],
        source=kw["source"],
        data_dir=kw["data_dir"],
        hub_mirror=kw["hub_mirror"],
        pretrained=kw["pretrained"],
    )


def _command_run(name: str, opts):
    """The run of this command: the one `mlflow run` made (MLFLOW_RUN_ID), or a new top-level run."""
    import mlflow

    from stilts_mlflow import tracking
    from stilts_mlflow.options import subset_name

    tracking.setup()
    run = mlflow.start_run(run_name=name)
    mlflow.set_tags(
        {
            "stilts.phase": name,
            "stilts.preset": opts.preset,
            "stilts.seed": str(opts.seed),
            "stilts.subset": subset_name(opts.tasks),
            "stilts.k": str(len(opts.tasks)),
            **tracking.thread_tag(),
        }
    )
    return run


@main.command()
@_phase_options
@click.option(
    "--publish",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write the encoder as a published directory here (weights, config, tokenizer and a manifest "
    "with the world fingerprint, recipe, steps, wall time and sha256 of every file); "
    "stilts_mlflow/encoders/stilts-mini-xlmr is the one the tiny preset ships.",
)
def pretrain(publish: str | None, **kw):
    """Phase 1: MLM pretraining of the tiny XLM-R on the synthetic corpus (offline presets only): makes the
    published encoder stilts-mini-xlmr (tiny) from scratch."""
    import mlflow

    from stilts_mlflow import published
    from stilts_mlflow.context import Context
    from stilts_mlflow.pretraining import run_pretrain

    kw["pretrain_mode"] = "train"  # this command always pretrains; `auto` would resolve to the shipped encoder
    opts = _options(kw)
    preset = opts.resolve()
    with _command_run("pretrain", opts):
        out = run_pretrain(opts, Context(preset, opts.progress))
        if publish:  # MLproject passes "" for no directory
            manifest = published.publish(out.path, Path(publish), preset, opts.pretrain_seed, out.metrics)
            mlflow.log_dict(manifest, "published_manifest.json")
            log.info("published encoder: %s (%d steps, %.0f s)", publish, manifest["steps"], manifest["wall_seconds"])
    log.info("pretrained encoder: %s (run %s%s)", out.path, out.run_id, ", reused" if out.reused else "")


@main.command()
@lambda f: _phase_options(f, tasks="mnli")
def intermediate(**kw):
    """Phase 2: multi-task training on English intermediate tasks (--tasks), after phase 1 (cached)."""
    from stilts_mlflow.context import Context
    from stilts_mlflow.phases import run_intermediate
    from stilts_mlflow.pretraining import initial_encoder

    opts = _options(kw)
    if not opts.tasks:
        raise ValueError("--tasks is required for the intermediate phase (e.g. --tasks mnli,squad)")
    with _command_run("intermediate", opts):
        ctx = Context(opts.resolve(), opts.progress)
        out = run_intermediate(opts, ctx, *initial_encoder(opts, ctx))
    log.info("intermediate model: %s (run %s%s)", out.path, out.run_id, ", reused" if out.reused else "")


@main.command()
@_phase_options
def target(**kw):
    """Phase 3: English NLI fine-tune (XNLI-en train), after phases 1-2 (cached)."""
    from stilts_mlflow.context import Context
    from stilts_mlflow.phases import run_through_target

    opts = _options(kw)
    with _command_run("target", opts):
        out = run_through_target(opts, Context(opts.resolve(), opts.progress))
    log.info("target model (XLMRobertaForSequenceClassification): %s (run %s)", out.path, out.run_id)


@main.command()
@_phase_options
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An XLMRobertaForSequenceClassification directory to evaluate; default: the pipeline's target "
    "model for these options (trained or reused).",
)
def evaluate(model_dir: str | None, **kw):
    """Zero-shot XNLI test accuracy in 15 languages, confusion matrices, table and figure."""
    from stilts_mlflow.context import Context
    from stilts_mlflow.phases import run_evaluate, run_pipeline
    from stilts_mlflow.tracking import make_key

    opts = _options(kw)
    with _command_run("evaluate", opts):
        if model_dir:
            weights = Path(model_dir) / "model.safetensors"
            digest = (
                hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else str(Path(model_dir).resolve())
            )
            ctx = Context(opts.resolve(), opts.progress)
            out = run_evaluate(opts, ctx, model_dir, make_key(model_sha256=digest))
        else:
            out = run_pipeline(opts)["evaluate"]
    _print_metrics(out.metrics)


@main.command()
@_phase_options
@click.option(
    "--parent-run-id",
    default="",
    help="Run this pipeline as a child of that run (a study's "
    "scaling run sets it when it submits children through an MLflow project backend).",
)
def pipeline(parent_run_id: str, **kw):
    """pretrain -> intermediate -> target -> evaluate, each a nested MLflow run, finished phases reused."""
    import mlflow

    from stilts_mlflow.phases import run_pipeline
    from stilts_mlflow.scaling.children import record_child

    opts = _options(kw)
    with _command_run("pipeline", opts) as run:
        if parent_run_id:
            mlflow.set_tag("mlflow.parentRunId", parent_run_id)
        result = run_pipeline(opts)
        record_child(opts, run.info.run_id, result)  # a study with these options reuses this run
    _print_metrics(result["evaluate"].metrics)


@main.command()
@_preset
@click.option("--seeds", default="0,1,2", show_default=True, help="Target seeds of the k = 0 pipelines: 0,1,2 or 0-2.")
@click.option(
    "--ablation/--no-ablation",
    default=True,
    show_default=True,
    help="Also run the same pipeline from a randomly initialised encoder (--pretrain skip).",
)
@click.option(
    "--pretrain",
    "pretrain_mode",
    type=click.Choice(["auto", "train"]),
    default="auto",
    show_default=True,
    help="auto: the preset's published encoder; train: the one pretraining here makes.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="transfer_report",
    show_default=True,
    help="Directory for transfer.json and transfer.md (also logged to the transfer run).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars, the libraries' included.")
def transfer(preset: str, seeds: str, ablation: bool, pretrain_mode: str, out: str, no_progress: bool):
    """How the encoder transfers: k = 0 pipelines (one per seed, cached like the study's children), each language's
    share of English's margin over chance (r) next to XLM-R base's, and the random-encoder ablation."""
    import mlflow

    from stilts_mlflow import transfer as tr
    from stilts_mlflow.options import Options
    from stilts_mlflow.scaling.children import run_child

    if no_progress:
        quiet_libraries()
    base = Options(preset=preset, pretrain=pretrain_mode, progress=not no_progress)
    seed_list = _int_list(seeds, "seeds")
    if not seed_list:
        raise ValueError(f"--seeds: give at least one seed; got {seeds!r}")
    with _command_run("transfer", base):
        mlflow.set_tags({"stilts.subset": "none", "stilts.seed": seeds})
        mlflow.log_params({"preset": preset, "seeds": seeds, "ablation": ablation, "pretrain": pretrain_mode})
        runs = {s: tr.accuracies(run_child(replace(base, seed=s, progress=False))[0]["metrics"]) for s in seed_list}
        random = (
            tr.accuracies(run_child(replace(base, pretrain="skip", progress=False))[0]["metrics"]) if ablation else None
        )
        summary = tr.summarize(runs, random)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "transfer.json").write_text(json.dumps(summary, indent=1))
        (out_dir / "transfer.md").write_text(tr.markdown(summary))
        mlflow.log_artifacts(str(out_dir), artifact_path="transfer")
        mlflow.log_metrics(
            {
                "transfer/mean_r": summary["mean_r"],
                "transfer/spearman_rho": summary["spearman_rho_vs_xlmr_base"],
                "transfer/min_accuracy": summary["min_accuracy"],
                **({"transfer/random_mean_r": summary["random_encoder"]["mean_r"]} if ablation else {}),
            }
        )
    click.echo(tr.markdown(summary))


def _print_metrics(metrics: dict[str, float]) -> None:
    accs = {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("test/accuracy.")}
    click.echo("zero-shot XNLI test accuracy: " + "  ".join(f"{k} {v:.3f}" for k, v in accs.items()))
    if "test/en_gap" in metrics:
        click.echo(f"English - non-English gap: {metrics['test/en_gap']:.3f}")


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 or auto; got {text!r}")
    return value


def _int_list(text: str, name: str) -> tuple[int, ...]:
    """'0-9' or '0,1,4' -> integers; an empty or reversed range, an empty item or a negative number is an
    error here, before the study starts."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            values = tuple(range(lo, hi + 1))
        else:
            values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{name} must look like 0-9 or 0,1,4; got {text!r}") from None
    if not values or min(values) < 0:
        raise ValueError(
            f"{name} must name at least one whole number >= 0 (a range low-high with low <= high); got {text!r}"
        )
    return values


def _design(command):
    """The study design's options (scaling, simulate): sizes, subsets per size, seeds, design seed."""
    for option in reversed(
        (
            click.option(
                "--sizes", default="0-9", show_default=True, help="Subset sizes k to run: a range 0-9 or a list 0,1,4."
            ),
            click.option(
                "--subsets-per-size",
                type=click.IntRange(min=1),
                default=2,
                show_default=True,
                help="Subsets sampled at sizes with many subsets (k = 0, 1, 8, 9 are run in full).",
            ),
            click.option(
                "--seeds", default="0", show_default=True, help="Seeds of the intermediate and target phases: 0,1,2."
            ),
            click.option(
                "--design-seed",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="Seed of the subset sample.",
            ),
        )
    ):
        command = option(command)
    return command


def _study_design(sizes: str, subsets_per_size: int, seeds: str, design_seed: int):
    from stilts_mlflow.scaling.design import StudyDesign

    return StudyDesign(
        sizes=_int_list(sizes, "sizes"),
        subsets_per_size=subsets_per_size,
        seeds=_int_list(seeds, "seeds"),
        design_seed=design_seed,
    )


@main.command()
@_preset
@_design
@click.option(
    "--budget",
    type=click.Choice(choices.BUDGETS),
    default="fixed",
    show_default=True,
    help="fixed: the same intermediate steps for every k (k is not confounded with compute).",
)
@click.option(
    "--sampler",
    type=click.Choice(list(SAMPLERS)),
    default="proportional",
    show_default=True,
    help="Multi-task sampling of intermediate tasks.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="scaling_report",
    show_default=True,
    help="Directory for the report files (also logged to the scaling run).",
)
@click.option(
    "--export/--no-export",
    default=True,
    show_default=True,
    help="Export every registered version to ONNX (stilts-xnli-onnx twins with the same aliases).",
)
@click.option("--no-progress", is_flag=True, help="No progress bars, the libraries' included.")
@click.option(
    "--backend",
    type=click.Choice(choices.BACKENDS),
    default="in-process",
    show_default=True,
    help="Where child pipelines run: this process; MLflow project runs on this machine "
    "(--max-parallel at a time); Kubernetes Jobs through MLflow's Kubernetes backend; or Ray tasks on a "
    "Ray cluster (RAY_ADDRESS; needs MLFLOW_TRACKING_URI to be a tracking server and pip install "
    "'stilts-mlflow[cluster]'; docs/deployment.md).",
)
@click.option(
    "--backend-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="kubernetes: MLflow's backend config JSON; default: the project's deploy/kubernetes/backend.json. "
    "ray: JSON with any of address, cpus, gpus, memory_gb, resources, max_retries, schedule_timeout_s "
    "(deploy/ray/backend.json); default: RAY_ADDRESS and the preset's request.",
)
@click.option(
    "--max-parallel",
    default="auto",
    show_default=True,
    help="Child pipelines running at once: a number, or auto (this machine's CPU cores, at most 8, "
    "without a GPU; 1 with one; ray: every pipeline, as many running as the cluster's nodes hold). "
    "in-process with more than 1: a pool of worker processes.",
)
@click.option(
    "--render-jobs",
    type=click.Path(file_okay=False),
    default=None,
    help="kubernetes: write one Job manifest per child pipeline still to run into this directory and "
    "stop (no image build, no cluster).",
)
@click.option(
    "--plan",
    type=click.BOOL,
    is_flag=False,
    flag_value=True,
    default=False,
    show_default=True,
    help="Print the design, its expected wall time (GPU-hours on xlmr presets), the smallest slope and "
    "curvature it can detect, and how both change with more seeds or subsets; train nothing. "
    "`--plan` alone or `--plan true` (MLproject: -P plan=true).",
)
@click.option("--gpu", default=None, help="--plan on xlmr presets: the GPU type to cost (default: the preset's).")
@click.option(
    "--tokens-per-second",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="--plan on xlmr presets: training tokens/s per GPU instead of the preset's assumption.",
)
def scaling(
    preset,
    sizes,
    subsets_per_size,
    seeds,
    budget,
    sampler,
    design_seed,
    out,
    export,
    no_progress,
    backend,
    backend_config,
    max_parallel,
    render_jobs,
    plan,
    gpu,
    tokens_per_second,
):
    """The diminishing-returns study: one pipeline per (task subset, seed), analysis, report, registry
    (--plan: what the study would cost and detect, without training)."""
    from stilts_mlflow.options import Options
    from stilts_mlflow.registry import MODEL_NAME, ONNX_MODEL_NAME
    from stilts_mlflow.scaling.launch import LaunchConfig, auto_parallel
    from stilts_mlflow.scaling.orchestrate import run_study

    if no_progress:
        quiet_libraries()
    design = _study_design(sizes, subsets_per_size, seeds, design_seed)
    base = Options(preset=preset, budget=budget, sampler=sampler, progress=not no_progress)
    if max_parallel != "auto":
        parallel = _positive_int(max_parallel, "max_parallel")
    else:  # ray: the cluster's scheduler runs as many as its nodes hold
        parallel = len(design.runs()) if backend == "ray" else auto_parallel()
    if plan:
        return _plan(design, preset, budget, parallel, gpu, tokens_per_second)
    if gpu or tokens_per_second:
        raise ValueError("--gpu and --tokens-per-second apply to --plan")
    if backend == "kubernetes" and not backend_config:  # MLproject passes "" for the default
        from stilts_mlflow.scaling.launch import KUBERNETES_BACKEND_CONFIG

        backend_config = str(KUBERNETES_BACKEND_CONFIG)
    launch = LaunchConfig(backend, backend_config or None, parallel)
    if render_jobs:
        return _render_jobs(design, base, launch, Path(render_jobs))
    if backend == "ray":  # the tracking server, the cluster and its nodes' resources, before the study starts
        from stilts_mlflow.scaling.ray_backend import preflight

        preflight(preset, launch.backend_config)
    with _command_run("scaling", base):
        import mlflow

        mlflow.set_tags({"stilts.subset": "study", "stilts.k": sizes, "stilts.seed": seeds})  # not one pipeline's
        mlflow.log_params(
            {
                "preset": preset,
                "sizes": sizes,
                "subsets_per_size": subsets_per_size,
                "seeds": seeds,
                "budget": budget,
                "sampler": sampler,
                "design_seed": design_seed,
                "pipelines": len(design.runs()),
                "backend": backend,
                "max_parallel": max_parallel,
                "parallel": parallel,
            }
        )  # as given (`mlflow run` logged it so) and as resolved
        result = run_study(design, base, Path(out), progress=not no_progress, export=export, launch=launch)
    analysis = result["analysis"]
    statement = analysis.power.get("statement")
    click.echo(f"verdict: {analysis.verdict}" + (f" — {statement}" if statement else ""))
    for line in analysis.evidence:
        click.echo(f"  {line}")
    click.echo(
        "XNLI test average by k: "
        + "  ".join(f"k={k} {c.mean:.3f} [{c.low:.3f}, {c.high:.3f}]" for k, c in sorted(analysis.curve.items()))
    )
    click.echo(
        f"pipelines: {len(result['rows'])} ({result['reused']} reused); report: {out}/report.md; "
        f"{MODEL_NAME}: {len(result['aliases'])} aliases, champion = version {result['aliases']['champion']}"
    )
    if result["onnx_aliases"]:
        click.echo(f"{ONNX_MODEL_NAME}: champion = version {result['onnx_aliases']['champion']}")


@main.command()
@click.option(
    "--studies",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Simulated studies per planted truth.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the simulation.")
@click.option(
    "--noise-from",
    type=click.Path(dir_okay=False),
    default=None,
    help="A study's summary.json to measure the noise on (default: the shipped reference study).",
)
@_design
@click.option("--trend", is_flag=True, help="Robustness: the subset noise grows with k as measured.")
@click.option(
    "--tails",
    type=click.FloatRange(min=2, min_open=True),
    default=None,
    help="Robustness: noise from a multivariate t with this many degrees of freedom (same covariance).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="calibration",
    show_default=True,
    help="Directory for calibration.md and calibration.json.",
)
def simulate(studies, seed, noise_from, sizes, subsets_per_size, seeds, design_seed, trend, tails, out):
    """Known-answer check of the study's statistics: simulated studies from planted truths (flat, steady,
    declining, diminishing, accelerating) with the measured noise, through the study's own analysis; prints the
    verdict-by-truth table, false-positive rates, interval coverage and power."""
    from stilts_mlflow.scaling import noise
    from stilts_mlflow.scaling import simulate as sim

    design = _study_design(sizes, subsets_per_size, seeds, design_seed)
    if len(set(design.sizes)) < 3:
        raise ValueError(f"sizes must name at least three sizes (a curvature needs them); got {sizes!r}")
    measured = noise.estimate(noise.load(noise_from), where=noise_from) if noise_from else noise.reference()
    result = sim.calibrate(design, measured, studies, seed, trend=trend, tails=tails)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.md").write_text(result.markdown())
    (out_dir / "calibration.json").write_text(json.dumps(result.to_dict(), indent=1))
    click.echo(result.markdown())


def _plan(design, preset: str, budget: str, parallel: int, gpu: str | None, tokens_per_second: float | None) -> None:
    """`scaling --plan`: the planner's table, nothing trained and no run started."""
    from stilts_mlflow.scaling import costs, noise
    from stilts_mlflow.scaling import plan as planner

    p = get_preset(preset)
    if p.throughput is None and (gpu or tokens_per_second):
        raise ValueError(
            f"--gpu and --tokens-per-second apply to presets with a GPU throughput (xlmr-base, "
            f"xlmr-large), not {preset}"
        )
    cost = costs.for_preset(p, gpu, tokens_per_second)
    click.echo(planner.render(planner.make(design, p, cost, noise.reference(), budget, parallel)))


def _render_jobs(design, base, launch, out: Path) -> None:
    """The Kubernetes Jobs a study would submit for its unfinished children, as YAML files."""
    import yaml

    from stilts_mlflow import tracking
    from stilts_mlflow.scaling.launch import render_kubernetes_jobs
    from stilts_mlflow.scaling.children import finished_child
    from stilts_mlflow.scaling.orchestrate import child_options

    if launch.backend != "kubernetes":
        raise ValueError("--render-jobs renders Kubernetes Jobs: give --backend kubernetes --backend-config FILE")
    experiment_id = tracking.setup()
    children = [o for o in child_options(design, base) if finished_child(o) is None]
    jobs = render_kubernetes_jobs(children, launch.backend_config, "SCALING_RUN_ID", experiment_id)
    out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        (out / f"{job['metadata']['name']}.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    click.echo(f"{len(jobs)} Kubernetes Jobs ({len(design.runs()) - len(jobs)} pipelines already finished) in {out}/")


@main.command()
@click.option(
    "--model-uri",
    default="models:/stilts-xnli@champion",
    show_default=True,
    help="models:/stilts-xnli@ALIAS, models:/stilts-xnli/VERSION, or an XLMRobertaForSequenceClassification directory.",
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=None,
    help="Preset whose XNLI dev set checks the export; default: the version's preset tag (else tiny).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Also keep the export directory here (directory URIs: default onnx_export/).",
)
def export(model_uri: str, preset: str | None, out: str | None):
    """ONNX export (fp32 optimized + int8) with torch parity and int8 accuracy checks; registry versions get a
    stilts-xnli-onnx twin with the same tags and aliases."""
    import shutil

    import mlflow

    from mlflow.exceptions import MlflowException

    from stilts_mlflow import export as onnx_export
    from stilts_mlflow import registry, spotcheck, tracking

    tracking.setup()
    mv = None
    if not Path(model_uri).is_dir():  # resolved before the run starts: an unknown alias leaves no FAILED run
        try:
            mv = registry.resolve_version(model_uri)
        except MlflowException as exc:
            raise ValueError(
                f"--model-uri {model_uri}: no such registered model version or alias ({exc.error_code})"
            ) from None
    with mlflow.start_run(run_name="export"):
        mlflow.set_tags({"stilts.phase": "export-command", "stilts.model_uri": model_uri})
        if mv is None:
            dev = onnx_export.xnli_dev(preset or "tiny")
            samples = onnx_export.parity_samples(dev)
            target = Path(out or "onnx_export")
            examples = spotcheck.for_preset(preset or "tiny")
            metrics = onnx_export.export_model(model_uri, target, samples, dev, examples=examples).metrics()
            tracking.log_metrics(metrics)
            model_id = onnx_export.log_onnx_model(
                target, mlflow.active_run().info.run_id, "onnx-export", samples["en"][:2]
            )
            click.echo(f"exported {model_uri} -> {target}; logged model models:/{model_id}")
        else:
            twin = registry.export_version(mv, preset)
            aliases = registry.mirror_aliases({str(mv.version): twin})
            if out:
                shutil.rmtree(out, ignore_errors=True)
                mlflow.artifacts.download_artifacts(f"models:/{twin.name}/{twin.version}", dst_path=out)
            metrics = {
                k: float(v) for k, v in twin.tags.items() if k.startswith(("parity", "dev.", "int8", "size", "seconds"))
            }
            click.echo(
                f"{mv.name} v{mv.version} -> {twin.name} v{twin.version}"
                + (f"; aliases {', '.join(sorted(aliases))}" if aliases else "")
            )
    for name, value in sorted(onnx_export.summary(metrics).items()):
        click.echo(f"  {name}: {value:.6g}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.pass_context
def serve(ctx: click.Context):
    """Serve multilingual NLI over HTTP: `python -m serving` (torch-free); --help lists its options."""
    from serving.__main__ import main as serving_main

    serving_main.main(args=ctx.args, prog_name="stilts serve")
