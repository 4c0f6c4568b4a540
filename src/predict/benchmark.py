"""`predict benchmark`: the whole pipeline against raw onnxruntime and Keras, measured in one run.

For each batch size: warm-up runs, then `iterations` full runs of the pipeline (decode, inference,
post-processing, writing), and the medians of their throughput and stage times; latency percentiles
over every batch of every run; the peak RSS of this process during that batch size's runs.
Baselines on the same model and the same pre-processed rows:
- raw: `InferenceSession.run` over arrays already in memory (a fresh session with onnxruntime's own
  defaults); for runners that are more than one session call (sequence to sequence: the generation
  loop on pre-tokenised ids; the torch backend) the task's own runner over the same arrays;
- bound: `rows / ((pre-processing + model + post-processing CPU-seconds) / usable cores)`, each stage
  measured alone in this process (`StageCosts`): what a pipeline that overlapped its stages perfectly
  on every core would reach;
- keras: `model.predict` on the `.h5`, when the task's model is one and TensorFlow is installed
  (timed in a child process, so TensorFlow never shares this process's cores or memory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime

from predict.config import TaskConfig
from predict.cpus import usable_cpus
from predict.data.collate import InProcessBatches, average_chunks
from predict.errors import ConfigError
from predict.heads.base import Head
from predict.model_file import KERAS_SUFFIXES
from predict.runners.ort import OrtRunner

if TYPE_CHECKING:
    from predict.plan import Plan
    from predict.summary import RunSummary

STAGES = ("pre-processing", "model", "post-processing")


@dataclass(frozen=True, kw_only=True)
class StageCosts:
    """Each stage's CPU-seconds over all rows, measured alone, and the throughput bound they set."""

    rows: int
    cpu_seconds: dict[str, float]  # STAGES -> CPU-seconds of this process (all its threads)
    cores: int  # usable by this process

    @property
    def bound_rows_per_second(self) -> float:
        """Rows per second if every stage ran on every core with no waiting: rows / (CPU-seconds / cores)."""
        return self.rows / (sum(self.cpu_seconds.values()) / self.cores)

    @property
    def dominant_stage(self) -> str:
        return max(self.cpu_seconds, key=self.cpu_seconds.__getitem__)


@dataclass(frozen=True, kw_only=True)
class BatchSizeResult:
    """Medians for one batch size."""

    batch_size: int
    rows: int
    rows_per_second: float
    latency_ms: dict[str, float]  # p50, p90, p99 of one batch through load, inference and post-processing
    stage_seconds: dict[str, float]  # main-thread time per stage; they sum to the run's scoring time
    model_seconds: float  # the model's own busy time, on its thread, overlapping load and post-processing
    decoding_workers: int  # decoding processes at the end of the last run (0: the main thread)
    peak_rss_mb: float
    raw_rows_per_second: float
    keras_rows_per_second: float | None
    stage_costs: StageCosts

    @property
    def ratio_to_bound(self) -> float:
        """Pipeline throughput over the bound (1.0 = the stages overlap perfectly on every core)."""
        return self.rows_per_second / self.stage_costs.bound_rows_per_second

    def as_dict(self) -> dict[str, Any]:
        """The fields and every ratio and stage figure, as benchmark.json holds each result."""
        costs = self.stage_costs
        return {
            **dataclasses.asdict(self),
            "ratio_to_raw": self.ratio_to_raw,
            "ratio_to_keras": self.ratio_to_keras,
            "bound_rows_per_second": costs.bound_rows_per_second,
            "ratio_to_bound": self.ratio_to_bound,
            "stage_cpu_seconds": costs.cpu_seconds,
            "dominant_stage": costs.dominant_stage,
            "cores": costs.cores,
        }

    @property
    def ratio_to_raw(self) -> float:
        """Pipeline throughput over raw `session.run` throughput (1.0 = no overhead at all)."""
        return self.rows_per_second / self.raw_rows_per_second

    @property
    def ratio_to_keras(self) -> float | None:
        """Pipeline throughput over Keras `predict` throughput."""
        return self.rows_per_second / self.keras_rows_per_second if self.keras_rows_per_second else None


def run_benchmark(
    task: TaskConfig, *, batch_sizes: list[int], warmup: int, iterations: int, keras: bool = True
) -> tuple[list[BatchSizeResult], dict[str, Any]]:
    """Measure every batch size; return the results and the facts of the run (provider, model, machine).

    `keras=False` leaves out the Keras baseline (its child process imports TensorFlow).

    Raises:
        ConfigError: a batch size below 1 or no iterations.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes must be positive integers (got {batch_sizes})")
    if iterations < 1 or warmup < 0:
        raise ConfigError(f"--iterations must be >= 1 and --warmup >= 0 (got {iterations}, {warmup})")
    results = []
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="predict-benchmark-") as scratch:
        for batch_size in batch_sizes:
            sized = _with(task, batch_size=batch_size, output_dir=Path(scratch) / "run")
            summaries, peak_rss_mb = _timed_runs(sized, warmup=warmup, iterations=iterations)
            last = summaries[-1]
            facts.update(provider=last.provider, rows=last.rows, onnx_model=str(last.model.path))
            timing = {"warmup": warmup, "iterations": iterations}
            results.append(_batch_size_result(sized, summaries, peak_rss_mb, scratch, keras=keras, **timing))
    facts.update(_run_facts(task, warmup=warmup, iterations=iterations))
    return results, facts


def _timed_runs(task: TaskConfig, *, warmup: int, iterations: int) -> tuple[list[RunSummary], float]:
    """The summaries of the timed runs (after `warmup` untimed ones) and the peak resident memory of all of them."""
    from predict.pipeline import run_task
    from predict.report import metrics

    summaries = []
    _reset_peak_rss()
    # One scikit-learn helper for all the runs: each run would fork its own and import the library again.
    data = task.data
    helper_started = metrics.config_needs_scikit_learn(task.problem_type, data.label_columns, data.split) and (
        metrics.start_import()
    )
    try:
        for iteration in range(warmup + iterations):
            summary = run_task(task, progress=False, overwrite=True)
            if iteration >= warmup:
                summaries.append(summary)
    finally:
        if helper_started:
            metrics.stop_helper()
    return summaries, _peak_rss_mb()


def _batch_size_result(
    task: TaskConfig,
    summaries: list[RunSummary],
    peak_rss_mb: float,
    scratch: str,
    *,
    warmup: int,
    iterations: int,
    keras: bool,
) -> BatchSizeResult:
    """The medians of one batch size's runs, next to raw onnxruntime, the bound and Keras on the same decoded inputs."""
    from predict.plan import build_plan, read_rows

    last = summaries[-1]
    task, dataframe = read_rows(task)
    plan = build_plan(task, dataframe, last.model, output_dir=task.output_dir)
    costs, inputs = measure_stage_costs(plan)
    raw = _raw_rows_per_second(plan, inputs, rows=costs.rows, warmup=warmup, iterations=iterations)
    keras_rows_per_second = (
        _keras_rows_per_second(task, inputs, scratch, warmup=warmup, iterations=iterations) if keras else None
    )
    batch_seconds = [seconds for summary in summaries for seconds in summary.batch_seconds]
    return BatchSizeResult(
        batch_size=task.runtime.batch_size,
        rows=last.rows,
        rows_per_second=statistics.median(summary.rows_per_second for summary in summaries),
        latency_ms={
            name: float(np.percentile(batch_seconds, q) * 1000) for name, q in (("p50", 50), ("p90", 90), ("p99", 99))
        },
        stage_seconds={
            stage: statistics.median(summary.stage_seconds[stage] for summary in summaries)
            for stage in last.stage_seconds
        },
        model_seconds=statistics.median(summary.model_seconds for summary in summaries),
        decoding_workers=last.decoding_workers,
        peak_rss_mb=peak_rss_mb,
        raw_rows_per_second=raw,
        keras_rows_per_second=keras_rows_per_second,
        stage_costs=costs,
    )


def measure_stage_costs(plan: Plan) -> tuple[StageCosts, list[dict[str, np.ndarray]]]:
    """Each stage alone over all the plan's rows, in this thread, timed in CPU-seconds of the process:
    decoding every batch, the model on every batch, the head on every batch's outputs (and its
    split-level step). Also returns every batch's model inputs, for the raw baseline."""
    clock = time.process_time  # every thread of the process: onnxruntime's intra-op threads count
    started = clock()
    batches = list(InProcessBatches(plan.dataset()))
    decoded = clock()
    outputs = [plan.runner.run(batch.inputs) for batch in batches]
    modelled = clock()
    _postprocess_all(plan.head, batches, outputs)
    done = clock()
    rows = sum(len(batch.row_ids) for batch in batches)
    seconds = dict(zip(STAGES, (decoded - started, modelled - decoded, done - modelled), strict=True))
    return StageCosts(rows=rows, cpu_seconds=seconds, cores=usable_cpus()), [dict(b.inputs) for b in batches]


def _postprocess_all(head: Head, batches: list, outputs: list[dict[str, np.ndarray]]) -> None:
    """The head's per-batch post-processing, then its split-level step when it has one (as the pipeline runs them)."""
    predictions = [head.postprocess(average_chunks(out, batch), batch) for batch, out in zip(batches, outputs)]
    if type(head).finalize is not Head.finalize:
        head.finalize({key: np.concatenate([part[key] for part in predictions]) for key in predictions[0]})


def _run_facts(task: TaskConfig, *, warmup: int, iterations: int) -> dict[str, Any]:
    """What every batch size shares: the config, the settings and the versions."""
    return {
        "config": str(task.source),
        "model": str(task.model),
        "warmup": warmup,
        "iterations": iterations,
        "num_workers": "unset" if task.runtime.num_workers is None else task.runtime.num_workers,
        "threads": task.runtime.threads,
        "python": sys.version.split()[0],
        "onnxruntime": importlib.import_module("onnxruntime").__version__,
    }


def format_markdown(results: list[BatchSizeResult], facts: dict[str, Any]) -> str:
    """The results as a Markdown table with the ratios, plus the facts of the run."""
    lines = [
        f"`{facts['config']}`: {facts['rows']} rows, provider **{facts['provider']}**, "
        f"{facts['iterations']} iterations after {facts['warmup']} warm-up, medians; "
        f"num_workers {facts['num_workers']}, onnxruntime {facts['onnxruntime']}",
        "",
        "| batch | decoding | rows/s | raw session.run rows/s | ratio to raw | bound rows/s | ratio to bound "
        "| CPU s pre / model / post | Keras predict rows/s | ratio to Keras "
        "| latency p50 / p90 / p99 ms | load / inference wait / post / write s | model busy s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        keras = f"{result.keras_rows_per_second:.1f}" if result.keras_rows_per_second else "n/a"
        keras_ratio = f"{result.ratio_to_keras:.2f}x" if result.ratio_to_keras else "n/a"
        latency = " / ".join(f"{result.latency_ms[name]:.1f}" for name in ("p50", "p90", "p99"))
        stages = " / ".join(f"{seconds:.2f}" for seconds in result.stage_seconds.values())
        decoding = f"{result.decoding_workers} workers" if result.decoding_workers else "main thread"
        costs = result.stage_costs
        cpu = " / ".join(f"{costs.cpu_seconds[stage]:.2f}" for stage in STAGES)
        lines.append(
            f"| {result.batch_size} | {decoding} | {result.rows_per_second:.1f} | {result.raw_rows_per_second:.1f} "
            f"| {result.ratio_to_raw:.2f}x | {costs.bound_rows_per_second:.1f} | {result.ratio_to_bound:.2f}x "
            f"| {cpu} ({costs.dominant_stage}) | {keras} | {keras_ratio} | {latency} | {stages} "
            f"| {result.model_seconds:.2f} | {result.peak_rss_mb:.0f} |"
        )
    if facts["provider"] != "CUDAExecutionProvider":
        lines += ["", f"Note: ran on {facts['provider']}; no CUDA provider was used."]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, results: list[BatchSizeResult], facts: dict[str, Any]) -> tuple[Path, Path]:
    """Write `benchmark.json` and `benchmark.md` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"facts": facts, "results": [result.as_dict() for result in results]}
    json_path, markdown_path = folder / "benchmark.json", folder / "benchmark.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    markdown_path.write_text(format_markdown(results, facts), encoding="utf-8")
    return json_path, markdown_path


def _reset_peak_rss() -> None:
    """Start a new peak for this process (Linux: "5" to clear_refs), so each batch size gets its own."""
    # Elsewhere the peak stays the process's peak so far (see _peak_rss_mb).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    """Peak resident memory since `_reset_peak_rss` (VmHWM); where /proc has none, the process's peak so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _with(task: TaskConfig, *, batch_size: int, output_dir: Path) -> TaskConfig:
    runtime = dataclasses.replace(task.runtime, batch_size=batch_size)
    output = dataclasses.replace(task.output, dir=output_dir)
    return dataclasses.replace(task, runtime=runtime, output=output)


def _raw_rows_per_second(
    plan: Plan, inputs: list[dict[str, np.ndarray]], *, rows: int, warmup: int, iterations: int
) -> float:
    """Rows (not pieces: long audio and text are fed as several) per second of the model alone on in-memory inputs."""
    runner = plan.runner
    if isinstance(runner, OrtRunner):
        # A session with onnxruntime's own defaults (only the thread count shared): the ceiling is
        # measured without the pipeline's tuning, so the tuning cannot flatter the ratio.
        options = onnxruntime.SessionOptions()
        if plan.task.runtime.threads:
            options.intra_op_num_threads = plan.task.runtime.threads
        session = onnxruntime.InferenceSession(str(plan.model.path), options, providers=runner.session.get_providers())
        run = functools.partial(session.run, None)
    else:  # the generation loop, or torch: the runner itself (tensor conversion and all)
        run = runner.run
    seconds = []
    for iteration in range(warmup + iterations):
        tick = time.perf_counter()
        for feeds in inputs:
            run(feeds)
        if iteration >= warmup:
            seconds.append(time.perf_counter() - tick)
    return rows / statistics.median(seconds)


def _keras_rows_per_second(
    task: TaskConfig, inputs: list[dict[str, np.ndarray]], scratch: str, *, warmup: int, iterations: int
) -> float | None:
    if task.model.suffix.lower() not in KERAS_SUFFIXES or importlib.util.find_spec("tensorflow") is None:
        return None
    arrays_path = Path(scratch) / "keras_inputs.npz"
    names = list(inputs[0])
    np.savez(
        arrays_path,
        **{f"{index:02d}": np.concatenate([feeds[name] for feeds in inputs]) for index, name in enumerate(names)},
    )
    command = [
        sys.executable, "-m", "converters.keras_baseline", str(task.model), "--inputs", str(arrays_path),
        "--batch-size", str(task.runtime.batch_size), "--warmup", str(warmup), "--iterations", str(iterations),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise ConfigError(f"Keras baseline failed: {completed.stderr.strip().splitlines()[-1:]}")
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    return measured["rows"] / statistics.median(measured["seconds"])
