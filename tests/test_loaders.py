"""Hub loaders on fixtures built in the real Hugging Face formats, the local loader's errors, export."""

import json
from dataclasses import replace
from pathlib import Path

import datasets
import pytest

from stilts_mlflow.data import export
from stilts_mlflow.presets import get_preset
from stilts_mlflow.tasks import DataError, INTERMEDIATE_TASKS, make_loader
from stilts_mlflow.tasks.loaders import HubLoader, LocalLoader
from stilts_mlflow.tasks.spec import TASKS

# One row per dataset, with the real column names and types of each hub dataset.
NLI_ROW = {"premise": "A man eats.", "hypothesis": "A person eats.", "label": 0}
FIXTURES = {
    "facebook/xnli": (NLI_ROW, ["train", "validation", "test"]),
    "nyu-mll/glue/mnli": (
        {**NLI_ROW, "idx": 7},
        ["train", "validation_matched", "validation_mismatched", "test_matched"],
    ),
    "facebook/anli": ({"uid": "u1", **NLI_ROW, "reason": ""}, ["train_r3", "dev_r3", "test_r3"]),
    "nyu-mll/glue/qqp": (
        {"question1": "How do I cook?", "question2": "How can I cook?", "label": 1, "idx": 3},
        ["train", "validation", "test"],
    ),
    "rajpurkar/squad": (
        {
            "id": "s1",
            "title": "T",
            "context": "Ann owns a red car.",
            "question": "What does Ann own?",
            "answers": {"text": ["a red car"], "answer_start": [9]},
        },
        ["train", "validation"],
    ),
    "rajpurkar/squad_v2": (
        {
            "id": "s2",
            "title": "T",
            "context": "Ann owns a red car.",
            "question": "Who sold it?",
            "answers": {"text": [], "answer_start": []},
        },
        ["train", "validation"],
    ),
    "Rowan/hellaswag": (
        {
            "ind": 4,
            "activity_label": "Cooking",
            "ctx_a": "A man cooks.",
            "ctx_b": "he",
            "ctx": "A man cooks. he",
            "endings": ["eats.", "flies.", "sings.", "swims."],
            "source_id": "x",
            "split": "train",
            "split_type": "indomain",
            "label": "0",
        },
        ["train", "validation"],
    ),
    "allenai/cosmos_qa": (
        {
            "id": "c1",
            "context": "I was late.",
            "question": "Why?",
            "answer0": "bus",
            "answer1": "rain",
            "answer2": "cat",
            "answer3": "none",
            "label": 1,
        },
        ["train", "validation"],
    ),
    "tau/commonsense_qa": (
        {
            "id": "q1",
            "question": "Where is a dog?",
            "question_concept": "dog",
            "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["park", "sky", "sea", "sun", "moon"]},
            "answerKey": "A",
        },
        ["train", "validation"],
    ),
}


def _build_mirror(root: Path) -> Path:
    for key, (row, splits) in FIXTURES.items():
        parts = key.split("/")
        path, config = "/".join(parts[:2]), parts[2] if len(parts) > 2 else None
        configs = [None] if path != "facebook/xnli" else ["en", "fr", "zh", "sw"]
        for cfg in configs:
            cfg = config or cfg
            dd = datasets.DatasetDict({s: datasets.Dataset.from_list([row, row]) for s in splits})
            if "test_matched" in splits:  # GLUE test splits are unlabeled: label -1
                dd["test_matched"] = datasets.Dataset.from_list([{**row, "label": -1}])
            dd.save_to_disk(str(root / path.replace("/", "__") / (cfg or "default")))
    return root


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return _build_mirror(tmp_path_factory.mktemp("hub"))


def _hub_cfg(mirror, tmp_path=None):
    cfg = replace(get_preset("xlmr-base").data, hub_mirror=str(mirror))
    return replace(cfg, local_dir=str(tmp_path)) if tmp_path else cfg


@pytest.mark.parametrize("task", [t for t in TASKS if t not in ("ccg", "mlm")])
def test_hub_loader_reads_real_formats(task, mirror):
    loader = HubLoader(_hub_cfg(mirror))
    for split in ("train", "dev"):
        for lang in ("en", "fr", "zh") if task == "xnli" else ("en",):
            recs = loader.load(task, split, lang)
            assert len(recs) == 2 and all(r["lang"] == lang for r in recs)
    rec = recs[0]
    expected = {
        "xnli": ("label", "entailment"),
        "mnli": ("label", "entailment"),
        "anli": ("label", "entailment"),
        "qqp": ("label", "duplicate"),
        "squad": ("answers", {"text": ["a red car"], "answer_start": [9]}),
        "squad_v2": ("answers", {"text": [], "answer_start": []}),
        "hellaswag": ("label", 0),
        "cosmosqa": ("label", 1),
        "commonsenseqa": ("label", 0),
    }[task]
    assert rec[expected[0]] == expected[1]


def test_hub_loader_calls_load_dataset_with_real_names(monkeypatch, mirror):
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.load_from_disk(str(mirror / path.replace("/", "__") / (name or "default")))[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loader = HubLoader(get_preset("xlmr-base").data)
    for task in [t for t in INTERMEDIATE_TASKS if t != "ccg"] + ["xnli"]:
        loader.load(task, "train", "sw" if task == "xnli" else "en")
    assert ("facebook/xnli", "sw", "train") in calls
    assert ("nyu-mll/glue", "mnli", "train") in calls and ("nyu-mll/glue", "qqp", "train") in calls
    assert {c[0] for c in calls} >= {
        "facebook/anli",
        "rajpurkar/squad",
        "rajpurkar/squad_v2",
        "Rowan/hellaswag",
        "allenai/cosmos_qa",
        "tau/commonsense_qa",
    }


def test_unlabeled_hub_rows_are_skipped_and_reported(mirror, caplog, monkeypatch):
    from stilts_mlflow.tasks.spec import HubSource

    loader = HubLoader(_hub_cfg(mirror))
    assert loader._dataset("nyu-mll/glue", "mnli", "test_matched")[0]["label"] == -1
    monkeypatch.setitem(
        TASKS, "mnli", replace(TASKS["mnli"], hub=HubSource("nyu-mll/glue", "mnli", {"test": "test_matched"}))
    )
    assert loader.load("mnli", "test") == []
    assert "skipped 1 unlabeled rows" in caplog.text


def test_ccg_reads_ccgbank_tsv_and_explains_when_missing(tmp_path, mirror):
    loader = HubLoader(_hub_cfg(mirror, tmp_path))
    with pytest.raises(DataError, match="CCG has no hub dataset.*token<TAB>supertag"):
        loader.load("ccg", "train")
    (tmp_path / "ccg").mkdir()
    (tmp_path / "ccg" / "train.tsv").write_text("Ann\tN\nruns\tS[dcl]\\NP\n\nBob\tN\n.\t.\n")
    recs = loader.load("ccg", "train")
    assert [r["tokens"] for r in recs] == [["Ann", "runs"], ["Bob", "."]]
    (tmp_path / "ccg" / "dev.tsv").write_text("Ann\tN\nruns S\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: expected 'token<TAB>supertag'"):
        loader.load("ccg", "dev")


# --- local jsonl ----------------------------------------------------------------------------------
GOOD = {"id": "1", "text_a": "p", "text_b": "h", "label": "neutral", "lang": "en"}


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", r"train.jsonl:2: malformed JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "label"}), r"train.jsonl:2: missing field 'label'"),
        (json.dumps({**GOOD, "label": "maybe"}), r"train.jsonl:2: field 'label' is 'maybe'; allowed: entailment"),
        (json.dumps({**GOOD, "text_a": 3}), r"train.jsonl:2: field 'text_a' must be str, got int"),
        (json.dumps({**GOOD, "extra": 1}), r"train.jsonl:2: unknown field\(s\) extra"),
        (json.dumps({**GOOD, "text_a": "  "}), r"train.jsonl:2: field 'text_a' is empty"),
    ],
)
def test_local_loader_names_file_line_and_field(tmp_path, line, message):
    (tmp_path / "mnli").mkdir()
    (tmp_path / "mnli" / "train.jsonl").write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        LocalLoader(tmp_path).load("mnli", "train")


def test_local_span_answer_must_be_in_context(tmp_path):
    (tmp_path / "squad").mkdir()
    rec = {
        "id": "1",
        "context": "Ann owns a car.",
        "question": "q",
        "answers": {"text": ["car"], "answer_start": [2]},
        "lang": "en",
    }
    (tmp_path / "squad" / "dev.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"dev.jsonl:1: field 'answers': 'car' is not at offset 2"):
        LocalLoader(tmp_path).load("squad", "dev")


def test_export_is_deterministic_and_reloads_locally(tmp_path):
    cfg = get_preset("smoke").data
    a, b = export(cfg, tmp_path / "a", progress=False), export(cfg, tmp_path / "b", progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.jsonl"))
    assert len(files) == 9 * 3 + (1 + 15 + 15) + (15 + 15)  # 9 tasks x 3 splits; xnli, mlm per language
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    local = make_loader(replace(cfg, source="local", local_dir=str(a)))
    synthetic = make_loader(cfg)
    for task, split, lang in (("xnli", "dev", "th"), ("squad_v2", "train", "en"), ("ccg", "test", "en")):
        assert local.load(task, split, lang) == synthetic.load(task, split, lang)


def test_failed_export_leaves_nothing_behind(tmp_path):
    (tmp_path / "src" / "mnli").mkdir(parents=True)
    (tmp_path / "src" / "mnli" / "train.jsonl").write_text("{bad\n")
    cfg = replace(get_preset("smoke").data, source="local", local_dir=str(tmp_path / "src"))
    with pytest.raises(DataError):
        export(cfg, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
