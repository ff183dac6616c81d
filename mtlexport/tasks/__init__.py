"""Task definitions: one module per task type, each owning its head default, loss, metrics,
output name and export tolerances.

Add a task type by subclassing ``Task`` in a new module, decorating it with
``@TASKS.register("type_name")`` and importing the module below.
"""

from mtlexport.models.spec import ModelSpec, TaskSpec
from mtlexport.tasks import attributes as _attributes  # noqa: F401  (registers task types)
from mtlexport.tasks import custom as _custom  # noqa: F401
from mtlexport.tasks import depth as _depth  # noqa: F401
from mtlexport.tasks import normals as _normals  # noqa: F401
from mtlexport.tasks import segmentation as _segmentation  # noqa: F401
from mtlexport.tasks.base import TASKS, Meter, Task, Tolerance
from mtlexport.tasks.score import delta_score, metric_directions


def get_task_type(name: str) -> type[Task]:
    """The task class registered as ``name`` (ConfigError listing valid names otherwise)."""
    return TASKS.get(name)


def build_task(spec: TaskSpec) -> Task:
    """The task object for ``spec``."""
    return get_task_type(spec.type)(spec)


def build_tasks(spec: ModelSpec) -> dict[str, Task]:
    """Task objects for every task of a model, keyed by output name, in output order."""
    return {t.name: build_task(t) for t in spec.tasks}


__all__ = [
    "TASKS",
    "Meter",
    "Task",
    "Tolerance",
    "build_task",
    "build_tasks",
    "delta_score",
    "get_task_type",
    "metric_directions",
]
