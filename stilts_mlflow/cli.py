"""The `stilts` command line; every MLproject entry point is `python -m stilts_mlflow <command>`."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import click

from stilts_mlflow.presets import PRESETS, DataConfig, get_preset
from stilts_mlflow.tasks import DataError

log = logging.getLogger("stilts")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def data_config(preset: str, source: str | None, data_dir: str | None, hub_mirror: str | None) -> DataConfig:
    cfg = get_preset(preset).data
    if source:
        cfg = replace(cfg, source=source)
    if data_dir:
        cfg = replace(cfg, local_dir=data_dir)
    if hub_mirror:
        cfg = replace(cfg, hub_mirror=hub_mirror)
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


_preset = click.option("--preset", type=click.Choice(list(PRESETS)), default="tiny", show_default=True,
                       help="Preset: sizes, model and recipe (smoke for tests, tiny offline default).")
_source = click.option("--source", type=click.Choice(["synthetic", "hub", "local"]), default=None,
                       help="Data source; default: the preset's (synthetic for smoke/tiny, hub for xlmr-*).")
_data_dir = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="Local data directory (source=local), also where hub presets find CCG files.")
_mirror = click.option("--hub-mirror", type=click.Path(file_okay=False), default=None,
                       help="Directory of save_to_disk copies of hub datasets, for machines without hub access.")


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
            langs = "en" if list(sizes) == ["en"] else f"{len(sizes)} ({min(sizes.values())}-{max(sizes.values())} each)"
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
    """Train the preset's SentencePiece-unigram tokenizer on its MLM corpus (offline presets)."""
    from stilts_mlflow.data import materialize
    from stilts_mlflow.tokenizer import train_tokenizer
    from stilts_mlflow.tasks.loaders import LocalLoader
    from stilts_mlflow.world import XNLI_LANGUAGES, World

    cfg = get_preset(preset).data
    if cfg.tokenizer != "train":
        raise ValueError(f"preset {preset} uses the pretrained tokenizer {cfg.tokenizer}; nothing to train")
    loader = LocalLoader(materialize(cfg))
    texts = [r["text"] for lang in XNLI_LANGUAGES for r in loader.load("mlm", "train", lang)]
    train_tokenizer(texts, cfg.vocab_size, out, alphabet=World(cfg.world_seed).alphabet())
