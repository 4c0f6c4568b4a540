"""Ray Data engine (`runtime.engine: ray`): decoding and inference on a Ray cluster, everything else local.

    range(batches) → map_batches(decode batch i) → map_batches(model actor pool, num_gpus) → driver:
    head.postprocess → checkpoints → head.finalize (top-k, ...) → metrics → files

One Ray row is one model batch, pickled (Arrow cannot hold a `Batch`; Ray would pickle it anyway,
with a warning): item i of the modality's loader dataset (predict.data.*), the very object the local
engine iterates, so both engines feed the model the same rows in the same batches
and write identical files. The dataframe is read on the driver, as the local engine reads it, and
not with `ray.data.read_csv`: Ray's reader infers column types (`007` would become 7 in the CSV that
is written back), keeps no row index, and the split-level steps and the H2O files need the whole
dataframe on the driver anyway. What scales out is the costly part: decoding files and the model (an
autoscaling pool of actors, each loading the model once). On CPUs Ray fuses decoding into the
actors (each actor is then a whole local pipeline); actors with a GPU each (the model on CUDA) are
fed by decoding tasks on the CPUs.

`RayEngine.stream` yields what every engine yields (predict.engines): each batch, without its inputs
(they stay on the workers), with the model's raw outputs, in row order; post-processing, `--resume`
checkpoints, finalize, metrics and writers are the caller's, as for the local engine. Stage `load`
is the driver waiting for Ray (decoding and inference); `model_seconds` is the actors' inference
time, summed.

Ray is found through `ray.init()`: the cluster in `RAY_ADDRESS` (or one already initialised in this
process), else a local instance started for the run and stopped after it. Every node needs this
package installed and the data folder and model at the same paths (a shared filesystem).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predict.data.collate import from_shared
from predict.engines.base import Scored, check_readable
from predict.enums import Device
from predict.errors import ConfigError
from predict.runners.backend import load_runner

if TYPE_CHECKING:
    from predict.config import TaskConfig
    from predict.plan import Plan

# Model batches per Ray block: enough blocks for many decoding tasks, few enough to keep Ray's
# per-task overhead small next to decoding 8 batches of images.
_BATCHES_PER_BLOCK = 8
# A Ray instance started for the run: its workers at the driver's priority (Ray's default is nice 15).
WORKER_PRIORITY = {"worker_niceness": 0}


class RayEngine:
    """Streams a plan's batches through Ray Data (see the module docstring and predict.engines)."""

    def __init__(self) -> None:
        self.stage_seconds = {"load": 0.0, "inference": 0.0}
        self.model_seconds = 0.0  # summed over the actors
        self.decoding_workers: int | None = None  # Ray's to decide
        self.provider = ""
        self.notes: list[str] = []

    def stream(self, plan: Plan, first_batch: int) -> Iterator[Scored]:
        """Batches `first_batch`.. of the plan's rows, decoded and scored on Ray, in row order.

        Raises:
            ConfigError: Ray Data is not installed, or `runtime.device: cuda` on a cluster without GPUs.
        """
        self.provider = plan.runner.provider
        ray = _import_ray()
        started_here = connect_ray(ray) is not None
        context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        # Batches must come back in row order: checkpoints and the files are written in that order.
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the pipeline draws its own bar
        try:
            yield from self._scored(ray, plan, first_batch)
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
            if started_here:
                ray.shutdown()

    def _scored(self, ray: Any, plan: Plan, first_batch: int) -> Iterator[Scored]:
        dataset = plan.dataset()
        count = len(dataset) - first_batch
        if count <= 0:
            return
        gpus = gpus_per_actor(ray, plan.task.runtime.device)
        actors = plan.task.runtime.ray_actors or _default_actors(ray, gpus)
        rows = ray.data.range(count, override_num_blocks=max(1, -(-count // _BATCHES_PER_BLOCK)))
        rows = rows.map_batches(_decode, fn_kwargs={"dataset": dataset, "first_batch": first_batch}, batch_size=1)
        rows = rows.map_batches(
            _ModelActor,
            fn_constructor_kwargs={"task": plan.task, "model_path": str(plan.model.path)},
            batch_size=1,  # one Ray row is one model batch of runtime.batch_size rows
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_gpus=gpus,
        )
        expected, providers = first_batch, set()
        tick = time.perf_counter()
        for row in rows.iter_rows():
            if int(row["index"]) != expected:  # preserve_order guarantees this; the files depend on it
                raise RuntimeError(f"Ray returned batch {int(row['index'])} where batch {expected} was due")
            expected += 1
            self.model_seconds += float(row["seconds"])
            providers.add(str(row["provider"]))
            self.provider = ", ".join(sorted(providers))
            batch, outputs = pickle.loads(row["scored"])
            check_readable(batch, plan.task)
            self.stage_seconds["load"] += time.perf_counter() - tick
            yield Scored(batch, outputs, tick)
            tick = time.perf_counter()
        self.notes.append(
            f"ray: {count} batch(es) decoded and scored by up to {actors} model actor(s)"
            f"{f' with {gpus:g} GPU each' if gpus else ''}; inference {self.model_seconds:.2f} s summed over actors"
        )


def _decode(rows: dict[str, np.ndarray], *, dataset: Any, first_batch: int) -> dict[str, np.ndarray]:
    """Ray task: build model batches `rows["id"] + first_batch` exactly as the local loader does."""
    indices = rows["id"] + first_batch
    built = np.empty(len(indices), dtype=object)
    for slot, index in enumerate(indices):
        built[slot] = pickle.dumps(from_shared(dataset[int(index)]), protocol=5)
    return {"index": indices, "batch": built}


class _ModelActor:
    """Ray actor: loads the model once, then scores one model batch per call."""

    def __init__(self, *, task: TaskConfig, model_path: str) -> None:
        self.runner = load_runner(task, Path(model_path))

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scored = np.empty(len(rows["batch"]), dtype=object)
        seconds = np.zeros(len(scored))
        for slot, packed in enumerate(rows["batch"]):
            batch = pickle.loads(packed)
            tick = time.perf_counter()
            outputs = self.runner.run(batch.inputs)  # raw: the driver averages chunks as the local loop does
            seconds[slot] = time.perf_counter() - tick
            # The inputs stay here: only row ids, errors, context and outputs travel back to the driver.
            scored[slot] = pickle.dumps((batch._replace(inputs={}), outputs), protocol=5)
        providers = np.array([self.runner.provider] * len(scored), dtype=object)
        return {"index": rows["index"], "scored": scored, "seconds": seconds, "provider": providers}


def connect_ray(ray: Any) -> str | None:
    """Ray as the engines and `serve --engine ray` find it: None when this process is already connected,
    "cluster" after connecting to the one in `RAY_ADDRESS`, "local" after starting a local instance.
    Disconnect (`ray.shutdown()`) after anything but None."""
    if ray.is_initialized():
        return None
    if os.environ.get("RAY_ADDRESS"):  # an existing cluster refuses a driver's _system_config
        ray.init(logging_level=logging.WARNING)
        return "cluster"
    # Ray starts its workers at nice 15; here they do the run's work, so on a busy machine they
    # would starve behind any other process (measured: 8.8 s quiet, 269-561 s loaded; issue 20).
    ray.init(include_dashboard=False, logging_level=logging.WARNING, _system_config=WORKER_PRIORITY)
    return "local"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ConfigError(f"runtime.engine: ray needs Ray Data: pip install 'predict[ray]' ({error})") from None
    return ray


def gpus_per_actor(ray: Any, device: Device) -> float:
    """1 when the model should run on CUDA and the cluster has GPUs; `cuda` without any is an error."""
    if device is Device.CPU:
        return 0
    available = ray.cluster_resources().get("GPU", 0)
    if available >= 1:
        return 1
    if device is Device.CUDA:
        raise ConfigError("runtime.device: cuda, but the Ray cluster has no GPU; set runtime.device: auto or cpu")
    return 0


def _default_actors(ray: Any, gpus: float) -> int:
    """One actor per GPU; on CPUs half the cluster's CPUs, leaving the rest to decoding tasks."""
    resources = ray.cluster_resources()
    if gpus:
        return max(1, int(resources.get("GPU", 1)))
    return max(1, int(resources.get("CPU", 2)) // 2)
