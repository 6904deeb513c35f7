"""The task registry: what each task is, what head it trains, how it is scored, where real data lives.

Like jiant's registry, a task is data + head kind + metric. Heads are shared by name: the NLI head
serves mnli, anli and xnli (their labels are the same three, in run_xnli's order).
"""

from __future__ import annotations

from dataclasses import dataclass

NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
KINDS: tuple[str, ...] = ("classification", "span_qa", "multiple_choice", "tagging", "mlm")
SPLITS: tuple[str, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class HubSource:
    """Where `datasets.load_dataset` finds the real data, and which hub split is ours."""

    path: str
    config: str | None
    splits: dict[str, str]  # our split -> hub split


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    labels: tuple[str, ...]  # class labels (classification, tagging: filled from data for real CCG)
    metric: str  # primary metric
    head: str  # heads are shared by name
    paper_name: str
    hub: HubSource | None
    num_choices: int = 0
    description: str = ""


_GLUE = "nyu-mll/glue"
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            "xnli",
            "classification",
            NLI_LABELS,
            "accuracy",
            "nli",
            "XNLI",
            HubSource("facebook/xnli", "{lang}", {"train": "train", "dev": "validation", "test": "test"}),
            description="target task: English train, zero-shot dev/test in 15 languages",
        ),
        TaskSpec(
            "mnli",
            "classification",
            NLI_LABELS,
            "accuracy",
            "nli",
            "MNLI",
            HubSource(_GLUE, "mnli", {"train": "train", "dev": "validation_matched", "test": "validation_mismatched"}),
            description="NLI, same reasoning as the target, premises with place adjuncts",
        ),
        TaskSpec(
            "anli",
            "classification",
            NLI_LABELS,
            "accuracy",
            "nli",
            "ANLI",
            HubSource("facebook/anli", None, {"train": "train_r3", "dev": "dev_r3", "test": "test_r3"}),
            description="adversarial NLI: two-event premises, the hypothesis may concern the distractor",
        ),
        TaskSpec(
            "qqp",
            "classification",
            ("not_duplicate", "duplicate"),
            "f1",
            "qqp",
            "QQP",
            HubSource(_GLUE, "qqp", {"train": "train", "dev": "validation", "test": "validation"}),
            description="paraphrase: duplicate iff the questions differ only by synonyms",
        ),
        TaskSpec(
            "squad",
            "span_qa",
            (),
            "f1",
            "span",
            "SQuAD 1.1",
            HubSource("rajpurkar/squad", None, {"train": "train", "dev": "validation", "test": "validation"}),
            description="extractive QA over multi-event contexts, questions may use synonyms",
        ),
        TaskSpec(
            "squad_v2",
            "span_qa",
            (),
            "f1",
            "span",
            "SQuAD 2.0",
            HubSource("rajpurkar/squad_v2", None, {"train": "train", "dev": "validation", "test": "validation"}),
            description="extractive QA with unanswerable questions (antonym verbs, absent people)",
        ),
        TaskSpec(
            "hellaswag",
            "multiple_choice",
            (),
            "accuracy",
            "mc",
            "HellaSwag",
            HubSource("Rowan/hellaswag", None, {"train": "train", "dev": "validation", "test": "validation"}),
            num_choices=4,
            description="pick the ending that follows from the event's script",
        ),
        TaskSpec(
            "ccg",
            "tagging",
            (),
            "accuracy",
            "ccg",
            "CCG",
            None,
            description="CCG supertagging of English sentences (real data: a CCGbank-derived file)",
        ),
        TaskSpec(
            "cosmosqa",
            "multiple_choice",
            (),
            "accuracy",
            "mc",
            "Cosmos QA",
            HubSource("allenai/cosmos_qa", None, {"train": "train", "dev": "validation", "test": "validation"}),
            num_choices=4,
            description="reading comprehension: which statement is true, how a person feels",
        ),
        TaskSpec(
            "commonsenseqa",
            "multiple_choice",
            (),
            "accuracy",
            "mc",
            "CommonsenseQA",
            HubSource("tau/commonsense_qa", None, {"train": "train", "dev": "validation", "test": "validation"}),
            num_choices=5,
            description="taxonomy and selection knowledge: which thing is a kind of what",
        ),
        TaskSpec(
            "mlm",
            "mlm",
            (),
            "perplexity",
            "mlm",
            "XLM-R pretraining corpus",
            None,
            description="unlabeled multilingual documents (offline presets only)",
        ),
    )
}

INTERMEDIATE_TASKS: tuple[str, ...] = (
    "anli",
    "mnli",
    "qqp",
    "squad",
    "squad_v2",
    "hellaswag",
    "ccg",
    "cosmosqa",
    "commonsenseqa",
)


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def parse_tasks(text: str) -> tuple[str, ...]:
    """'mnli,squad' -> ('mnli', 'squad'); '' or 'none' -> (); raises ValueError naming bad names and on empty
    items ('mnli,,squad', a trailing comma)."""
    if text.strip() in ("", "none"):
        return ()
    names = tuple(t.strip() for t in text.split(","))
    if not all(names):
        raise ValueError(f"--tasks has an empty item in {text!r}; give names separated by single commas")
    bad = [t for t in names if t not in INTERMEDIATE_TASKS]
    if bad:
        raise ValueError(f"unknown intermediate task(s) {', '.join(bad)}; allowed: {', '.join(INTERMEDIATE_TASKS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"task listed twice in {text!r}")
    return names
