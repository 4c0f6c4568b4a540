"""Engines: where a plan's rows are decoded and scored (`runtime.engine`).

Every engine has one method, `stream(plan, first_batch)`, yielding `Scored` batches (the batch and
the model's raw outputs for it) in row order, from batch `first_batch` on; post-processing,
checkpoints and files stay with the caller (predict.pipeline), the same code for every engine.

- `local` (predict.engines.local): this process; decoding on the main thread or worker processes,
  the model on a thread of its own.
- `ray` (predict.engines.ray): Ray Data decodes and scores on a cluster; outputs come back here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from predict.engines.base import BatchEngine
from predict.engines.local import LocalEngine
from predict.engines.ray import RayEngine
from predict.enums import Engine

if TYPE_CHECKING:
    from predict.config import TaskConfig


def engine_for(task: TaskConfig) -> BatchEngine:
    """The engine `runtime.engine` names (Ray itself is imported only when its engine streams)."""
    return RayEngine() if task.runtime.engine is Engine.RAY else LocalEngine()
