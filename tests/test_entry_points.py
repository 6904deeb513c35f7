"""MLproject's entry points and the `stilts` CLI agree: every `--flag {param}` of an entry point's command is
an option of that command, and the entry point's default is the CLI's default (so `mlflow run . -e X` and
`stilts X` run the same thing); the CLI's defaults are the dataclasses' (Options, StudyDesign)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest
import yaml

from stilts_mlflow.cli import main
from stilts_mlflow.options import Options
from stilts_mlflow.scaling.design import StudyDesign

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
FLAG = re.compile(r"(--[a-z0-9-]+) \{([a-z_]+)\}")


def _command(entry: str) -> tuple[click.Command, list[tuple[str, str]]]:
    template = " ".join(PROJECT[entry]["command"].split())
    module, _, rest = template.partition("python -m ")[2].partition(" ")
    words = rest.split(" --")[0].split()
    if module == "serving":
        from serving.__main__ import main as serving_main

        command = serving_main
    else:
        command = main
        for word in words:
            command = command.commands[word]
    return command, FLAG.findall(template)


UNSET = getattr(click.core, "UNSET", None)  # click >= 8.3: an option without a default


def _default(param: click.Parameter):
    if param.default is UNSET:
        return False if getattr(param, "is_flag", False) else None
    return param.default


def _as_mlproject(value) -> str:
    """A CLI default as MLproject writes it: no value is "", sequences comma-joined."""
    if value is None or value == ():
        return ""
    if isinstance(value, bool):  # click.BOOL reads MLproject's "true"/"false"
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@pytest.mark.parametrize("entry", sorted(PROJECT))
def test_every_entry_point_default_is_the_clis(entry):
    command, flags = _command(entry)
    parameters = PROJECT[entry]["parameters"]
    assert {p for _, p in flags} == set(parameters), f"{entry}: parameters not passed to the command"
    options = {o: p for p in command.params for o in p.opts}
    for flag, name in flags:
        assert flag in options, f"MLproject {entry}: {flag} is not an option of the command"
        default = str(parameters[name]["default"])
        cli = _as_mlproject(_default(options[flag]))
        # an empty CLI default is the "nothing" an entry point spells `none` for tasks
        assert default == cli or (flag == "--tasks" and {default, cli} <= {"", "none"}), (
            f"MLproject {entry}: {name} defaults to {default!r}, the CLI's {flag} to {cli!r}"
        )


def _cli_params(command: click.Command) -> dict[str, object]:
    return {p.name: _default(p) for p in command.params}


@pytest.mark.parametrize("command", ["pretrain", "intermediate", "target", "evaluate", "pipeline"])
def test_phase_command_defaults_are_the_options_dataclass(command):
    cli = _cli_params(main.commands[command])
    renamed = {"pretrain": "pretrain_mode"}
    for f in dataclasses.fields(Options):
        name = renamed.get(f.name, f.name)
        if name == "progress":
            assert cli["no_progress"] is (not f.default)
        elif name == "tasks":
            assert f.default == () and cli["tasks"] == ("mnli" if command == "intermediate" else "")
        elif name in cli:
            assert cli[name] == f.default, f"stilts {command} --{name}: {cli[name]!r}, Options: {f.default!r}"
        else:
            pytest.fail(f"Options.{f.name} has no option in `stilts {command}`")


def test_scaling_defaults_are_the_study_design():
    cli = _cli_params(main.commands["scaling"])
    design = StudyDesign()
    assert cli["subsets_per_size"] == design.subsets_per_size
    assert cli["design_seed"] == design.design_seed
    assert cli["seeds"] == _as_mlproject(design.seeds)
    assert cli["sizes"] == f"{min(design.sizes)}-{max(design.sizes)}"
    assert len(design.sizes) == max(design.sizes) - min(design.sizes) + 1
