"""The local jsonl parser under generated input (hypothesis, seeded, fixed example budget): valid records
round-trip; any other line (random bytes, invalid UTF-8, huge numbers, deep nesting, wrong types, another
language) is a DataError naming the file and line, never another exception; empty and blank files are errors."""

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from stilts_mlflow.tasks.loaders import read_jsonl
from stilts_mlflow.tasks.records import DataError
from stilts_mlflow.tasks.spec import NLI_LABELS, get_task

SPEC = get_task("mnli")
EXAMPLES = 300
OUTCOMES: Counter = Counter()  # per class of generated line: loaded / DataError (printed at the end)
text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
records = st.fixed_dictionaries(
    {
        "id": st.text(max_size=8),
        "text_a": text,
        "text_b": st.none() | text,
        "label": st.sampled_from(NLI_LABELS),
        "lang": st.just("en"),
    }
)
bad_lines = st.one_of(
    st.binary(min_size=1, max_size=60).map(lambda b: ("bytes", b)),
    st.binary(min_size=1, max_size=20).map(lambda b: ("invalid utf-8", b"\xff" + b + b"\xfe")),
    st.integers(4400, 6000).map(lambda n: ("huge number", b'{"id": "1", "label": ' + b"9" * n + b"}")),
    st.integers(1100, 5000).map(lambda n: ("deep nesting", b"[" * n + b"]" * n)),
    records.flatmap(
        lambda r: st.sampled_from(sorted(r)).map(
            lambda k: ("wrong type", json.dumps({**r, k: 3 if k != "text_b" else []}).encode())
        )
    ),
    records.map(lambda r: ("other language", json.dumps({**r, "lang": "fr"}).encode())),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    ).map(lambda v: ("any JSON", json.dumps(v).encode())),
)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@seed(26)
@SETTINGS
@given(good=st.lists(records, min_size=1, max_size=5))
def test_valid_records_round_trip(tmp_path_factory, good):
    path = tmp_path_factory.mktemp("ok") / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in good) + "\n\n")
    assert read_jsonl(path, SPEC, "en") == good
    OUTCOMES["valid record", "loaded"] += len(good)


@seed(26)
@SETTINGS
@given(good=st.lists(records, max_size=3), bad=bad_lines)
def test_any_bad_line_is_a_data_error_naming_file_and_line(tmp_path_factory, good, bad):
    kind, line = bad
    path = tmp_path_factory.mktemp("bad") / "train.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in good) + line + b"\n")
    try:
        read_jsonl(path, SPEC, "en")
    except DataError as exc:
        message = str(exc)
        assert message.startswith(f"{path}:{len(good) + 1}: ") or (
            message.startswith(f"{path}: no records") and not line.strip()
        ), message
        OUTCOMES[kind, "DataError"] += 1
    else:  # only a line that happens to be a valid record or blank may pass
        OUTCOMES[kind, "loaded"] += 1
        assert kind in ("bytes", "any JSON")


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   \n\t\n"])
def test_empty_and_blank_files_are_errors(tmp_path, content):
    (tmp_path / "train.jsonl").write_bytes(content)
    with pytest.raises(DataError, match="train.jsonl: no records"):
        read_jsonl(tmp_path / "train.jsonl", SPEC, "en")


def test_zz_report_outcomes(capsys):
    """Prints the cases tried per class and their outcomes (runs last in this module)."""
    with capsys.disabled():
        print("\nlocal-data parser cases:", dict(sorted(OUTCOMES.items())))
    assert OUTCOMES["valid record", "loaded"] > 0
