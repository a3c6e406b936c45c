"""redrive: force-run failed Cloud Tasks tasks safely once a fix is deployed.

The function runtime, in layers that import downwards only (a test checks it):

- `redrive.core`: the pure core (names, settings, task state, signals, decisions, records);
- `redrive.adapters`: Cloud Tasks, Cloud Run, logging, the job queue, the throttle;
- `redrive.runtime`: one instance's settings and adapters;
- `redrive.pipeline`: one failed task, start to finish;
- `redrive.sweep`: many tasks after a deploy or a queue alert;
- `redrive.entry`: handle_signal and run_job, which main.py wires to functions-framework.

The public names below are resolved on first use, so importing a core module never loads the
layers above it (a cold start stays light).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redrive.core.config import ConfigError, Settings
    from redrive.core.names import InvalidName, QueueName, TaskName
    from redrive.core.outcomes import Outcome
    from redrive.entry import handle_job, handle_signal, run_job
    from redrive.runtime import Runtime

__version__ = "0.1.0"

_PUBLIC = {
    "ConfigError": "redrive.core.config",
    "Settings": "redrive.core.config",
    "InvalidName": "redrive.core.names",
    "QueueName": "redrive.core.names",
    "TaskName": "redrive.core.names",
    "Outcome": "redrive.core.outcomes",
    "Runtime": "redrive.runtime",
    "handle_job": "redrive.entry",
    "handle_signal": "redrive.entry",
    "run_job": "redrive.entry",
}

__all__ = [
    "ConfigError",
    "InvalidName",
    "Outcome",
    "QueueName",
    "Runtime",
    "Settings",
    "TaskName",
    "__version__",
    "handle_job",
    "handle_signal",
    "run_job",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'redrive' has no attribute {name!r}")
    return getattr(import_module(module), name)
