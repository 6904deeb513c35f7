"""What a user chooses for a pipeline (Options), checked on construction; the preset supplies the rest."""

from __future__ import annotations

from dataclasses import dataclass, replace

from stilts_mlflow import published
from stilts_mlflow.choices import BUDGETS, MIXED_PRECISION, PRETRAIN, SELECT
from stilts_mlflow.presets import Preset, get_preset
from stilts_mlflow.sampling import SAMPLERS
from stilts_mlflow.tasks import parse_tasks


@dataclass(frozen=True)
class Options:
    """What a user chooses on the command line (the preset supplies everything else)."""

    preset: str = "tiny"
    tasks: tuple[str, ...] = ()
    seed: int = 0
    pretrain_seed: int = 0  # shared by every pipeline of a study
    sampler: str = "proportional"
    temperature: float = 2.0
    cap: int = 0
    budget: str = "fixed"
    select: str = "en"
    pretrain: str = "auto"  # choices.PRETRAIN
    mixed_precision: str = "no"
    progress: bool = True
    source: str | None = None  # data overrides (see `stilts data --help`)
    data_dir: str | None = None
    hub_mirror: str | None = None
    pretrained: str | None = None  # a local XLM-R copy (save_pretrained dir with its tokenizer)

    def resolve(self) -> Preset:
        preset = get_preset(self.preset)
        if self.pretrained:
            if preset.model.init != "pretrained":
                raise ValueError(f"--pretrained applies to the xlmr presets; {preset.name} pretrains its own encoder")
            preset = replace(
                preset,
                model=replace(preset.model, pretrained=self.pretrained),
                data=replace(preset.data, tokenizer=self.pretrained),
            )
        if self.pretrain == "auto" and preset.model.published:  # start from the shipped encoder, its tokenizer
            name = published.PREFIX + preset.model.published
            preset = replace(
                preset,
                model=replace(preset.model, init="pretrained", pretrained=name),
                data=replace(preset.data, tokenizer=name),
            )
        elif self.pretrain == "train" and preset.pretrain is None:
            raise ValueError(
                f"pretrain=train: preset {preset.name} starts from {preset.model.pretrained} and has no "
                "pretraining recipe"
            )
        data = preset.data
        for name, value in (("source", self.source), ("local_dir", self.data_dir), ("hub_mirror", self.hub_mirror)):
            if value:
                data = replace(data, **{name: value})
        return replace(preset, data=data)

    def __post_init__(self):
        get_preset(self.preset)
        parse_tasks(",".join(self.tasks))
        checks = {
            "sampler": (self.sampler, SAMPLERS),
            "budget": (self.budget, BUDGETS),
            "select": (self.select, SELECT),
            "pretrain": (self.pretrain, PRETRAIN),
            "mixed_precision": (self.mixed_precision, MIXED_PRECISION),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.seed < 0 or self.pretrain_seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")
        if self.cap < 0:
            raise ValueError(f"cap must be >= 0; got {self.cap}")
        if self.sampler == "capped" and self.cap == 0:
            raise ValueError("sampler=capped needs cap > 0 (examples per task)")


def subset_name(tasks: tuple[str, ...]) -> str:
    """How runs, tags and registry aliases name a task subset: sorted names joined by '-', or 'none'."""
    return "-".join(sorted(tasks)) or "none"
