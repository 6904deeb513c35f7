"""The example records every loader yields, one schema per task kind, and their validation.

These dicts are also the `local` jsonl format (one record per line), documented in README:

- classification:  {"id", "text_a", "text_b" (str or null), "label" (one of the task's labels), "lang"}
- span_qa:         {"id", "context", "question", "answers": {"text": [str], "answer_start": [int]}, "lang"}
                   (empty lists = unanswerable; each answer must occur in context at answer_start)
- multiple_choice: {"id", "context", "question", "choices": [str], "label" (index of the right choice), "lang"}
- tagging:         {"id", "tokens": [str], "tags": [str] (same length), "lang"}
- mlm:             {"id", "text", "lang"}
"""

from __future__ import annotations

from typing import Any

from stilts_mlflow.tasks.spec import TaskSpec

Record = dict[str, Any]

SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "classification": {"id": str, "text_a": str, "text_b": (str, type(None)), "label": str, "lang": str},
    "span_qa": {"id": str, "context": str, "question": str, "answers": dict, "lang": str},
    "multiple_choice": {"id": str, "context": str, "question": str, "choices": list, "label": int, "lang": str},
    "tagging": {"id": str, "tokens": list, "tags": list, "lang": str},
    "mlm": {"id": str, "text": str, "lang": str},
}


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join("null" if x is type(None) else x.__name__ for x in t)
    return t.__name__


def validate(record: Any, task: TaskSpec, where: str) -> Record:
    """Check one record against its kind's schema; raise DataError naming `where` and the field."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    schema = SCHEMAS[task.kind]
    for field, typ in schema.items():
        if field not in record:
            raise DataError(f"{where}: missing field {field!r} (task {task.name}, kind {task.kind})")
        value = record[field]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise DataError(f"{where}: field {field!r} must be {_type_name(typ)}, got {type(value).__name__}")
    extra = set(record) - set(schema)
    if extra:
        raise DataError(f"{where}: unknown field(s) {', '.join(sorted(extra))} for kind {task.kind}")
    kind = task.kind
    if kind == "classification" and task.labels and record["label"] not in task.labels:
        raise DataError(f"{where}: field 'label' is {record['label']!r}; allowed: {', '.join(task.labels)}")
    if kind == "span_qa":
        answers = record["answers"]
        texts, starts = answers.get("text"), answers.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(f"{where}: field 'answers' needs lists 'text' and 'answer_start' of equal length")
        for text, start in zip(texts, starts):
            if not isinstance(start, int) or record["context"][start : start + len(text)] != text:
                raise DataError(f"{where}: field 'answers': {text!r} is not at offset {start} of the context")
    if kind == "multiple_choice":
        choices = record["choices"]
        if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise DataError(f"{where}: field 'choices' must be a list of at least two strings")
        if task.num_choices and len(choices) != task.num_choices:
            raise DataError(
                f"{where}: field 'choices' has {len(choices)} entries; {task.name} needs {task.num_choices}"
            )
        if not 0 <= record["label"] < len(choices):
            raise DataError(
                f"{where}: field 'label' is {record['label']}; must index 'choices' (0..{len(choices) - 1})"
            )
    if kind == "tagging":
        tokens, tags = record["tokens"], record["tags"]
        if len(tokens) != len(tags) or not tokens:
            raise DataError(f"{where}: fields 'tokens' and 'tags' must be non-empty and of equal length")
        if not all(isinstance(x, str) for x in tokens + tags):
            raise DataError(f"{where}: fields 'tokens' and 'tags' must hold strings")
    required_text = {"classification": "text_a", "span_qa": "context", "mlm": "text"}.get(kind)
    if required_text and not record[required_text].strip():
        raise DataError(f"{where}: field {required_text!r} is empty")
    return record
