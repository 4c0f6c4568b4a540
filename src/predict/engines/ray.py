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

`ray_batches` plugs into predict.pipeline's loop: it returns an iterator of `Batch`es, in row order,
whose `inputs` already hold the model's raw outputs, and a runner whose `run` hands them through, so
the loop's post-processing, `--resume` checkpoints, finalize, metrics and writers are the local
engine's own code. Stage `load` is then the driver waiting for Ray (decoding and inference).

Ray is found through `ray.init()`: the cluster in `RAY_ADDRESS` (or one already initialised in this
process), else a local instance started for the run and stopped after it. Every node needs this
package installed and the data folder and model at the same paths (a shared filesystem).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from predict.config import TaskConfig
from predict.data.collate import Batch, BatchDataset, from_shared
from predict.enums import Device
from predict.errors import ConfigError
from predict.model_file import ResolvedModel
from predict.runners.backend import load_runner
from predict.runners.base import Runner, TensorSpec

# Model batches per Ray block: enough blocks for many decoding tasks, few enough to keep Ray's
# per-task overhead small next to decoding 8 batches of images.
_BATCHES_PER_BLOCK = 8
# A Ray instance started for the run: its workers at the driver's priority (Ray's default is nice 15).
WORKER_PRIORITY = {"worker_niceness": 0}


class RayScoredRunner:
    """The runner predict.pipeline sees under Ray: batches arrive scored, `run` hands their outputs through.

    Attributes:
        inputs, outputs: the model's specs, from the driver's own load of the model.
        provider: what the actors ran (e.g. `CPUExecutionProvider`, `torch-cuda`), known after the first batch.
        notes: the driver runner's notes, then a line on the actors once the run is over.
    """

    def __init__(self, runner: Runner) -> None:
        self.inputs: tuple[TensorSpec, ...] = runner.inputs
        self.outputs: tuple[TensorSpec, ...] = runner.outputs
        self.provider: str = runner.provider
        self.notes: list[str] = list(getattr(runner, "notes", []))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs the actor pool computed for this batch (`Batch.inputs` of a Ray batch)."""
        return feeds


def ray_batches(
    task: TaskConfig, dataset: BatchDataset, *, model: ResolvedModel, runner: Runner, first_batch: int
) -> tuple[Iterator[Batch], RayScoredRunner]:
    """Score batches `first_batch`.. of `dataset` on Ray.

    Args:
        task: the validated task (shipped to every actor).
        dataset: the modality's loader dataset; item i is batch i.
        model: the resolved model file every actor loads (converted and cached on the driver).
        runner: the driver's runner, for the model's specs.
        first_batch: where a resumed run starts.

    Returns:
        Batches in row order whose `inputs` are the model's raw outputs, and the pass-through runner.

    Raises:
        ConfigError: Ray Data is not installed.
    """
    scored = RayScoredRunner(runner)
    return _stream(task, dataset, model.path, scored, first_batch), scored


def _stream(
    task: TaskConfig, dataset: Any, model_path: Path, scored: RayScoredRunner, first_batch: int
) -> Iterator[Batch]:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # Ray starts its workers at nice 15; here they do the run's work, so on a busy machine they
        # would starve behind any other process (measured: 8.8 s quiet, 269-561 s loaded; issue 20).
        ray.init(include_dashboard=False, logging_level=logging.WARNING, _system_config=WORKER_PRIORITY)
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    # Batches must come back in row order: checkpoints and the files are written in that order.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # the pipeline draws its own bar
    try:
        count = len(dataset) - first_batch
        if count <= 0:
            return
        gpus = _gpus_per_actor(ray, task.runtime.device)
        actors = task.runtime.ray_actors or _default_actors(ray, gpus)
        batches = ray.data.range(count, override_num_blocks=max(1, -(-count // _BATCHES_PER_BLOCK)))
        batches = batches.map_batches(_decode, fn_kwargs={"dataset": dataset, "first_batch": first_batch}, batch_size=1)
        batches = batches.map_batches(
            _ModelActor,
            fn_constructor_kwargs={"task": task, "model_path": str(model_path)},
            batch_size=1,  # one Ray row is one model batch of runtime.batch_size rows
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_gpus=gpus,
        )
        expected, seconds, providers = first_batch, 0.0, set()
        for row in batches.iter_rows():
            if int(row["index"]) != expected:  # preserve_order guarantees this; the files depend on it
                raise RuntimeError(f"Ray returned batch {int(row['index'])} where batch {expected} was due")
            expected += 1
            seconds += float(row["seconds"])
            providers.add(str(row["provider"]))
            scored.provider = ", ".join(sorted(providers))
            yield pickle.loads(row["batch"])
        scored.notes.append(
            f"ray: {count} batch(es) decoded and scored by up to {actors} model actor(s)"
            f"{f' with {gpus:g} GPU each' if gpus else ''}; inference {seconds:.2f} s summed over actors"
        )
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if started_here:
            ray.shutdown()


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
            # The inputs stay here: only outputs, row ids, errors and context travel back to the driver.
            scored[slot] = pickle.dumps(Batch(batch.row_ids, outputs, batch.errors, batch.context), protocol=5)
        providers = np.array([self.runner.provider] * len(scored), dtype=object)
        return {"index": rows["index"], "batch": scored, "seconds": seconds, "provider": providers}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ConfigError(f"runtime.engine: ray needs Ray Data: pip install 'predict[ray]' ({error})") from None
    return ray


def _gpus_per_actor(ray: Any, device: Device) -> float:
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
