"""Tasks: specs, record schemas, loaders (synthetic | hub | local) and data-set building."""

from stilts_mlflow.tasks.loaders import Loader, make_loader, split_size, task_languages
from stilts_mlflow.tasks.records import DataError, Record, validate
from stilts_mlflow.tasks.spec import INTERMEDIATE_TASKS, NLI_LABELS, TASKS, TaskSpec, get_task, parse_tasks

__all__ = [
    "DataError",
    "INTERMEDIATE_TASKS",
    "Loader",
    "NLI_LABELS",
    "Record",
    "TASKS",
    "TaskSpec",
    "get_task",
    "make_loader",
    "parse_tasks",
    "split_size",
    "task_languages",
    "validate",
]
